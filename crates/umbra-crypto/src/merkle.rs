//! RFC 6962 binary Merkle trees over 32-byte leaves.
use borsh::{BorshDeserialize, BorshSerialize};
use umbra_types::{Hash, sha256};

fn leaf_hash(leaf: &Hash) -> Hash {
    sha256(&[&[0u8], leaf.as_bytes()])
}

fn node_hash(l: &Hash, r: &Hash) -> Hash {
    sha256(&[&[1u8], l.as_bytes(), r.as_bytes()])
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::ZERO,
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The Merkle root of `leaves` (the zero hash for no leaves).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    root_of(leaves)
}

/// An audit path proving that a leaf sits at `index` in a tree of `size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, serde::Serialize, serde::Deserialize)]
pub struct MerkleProof {
    /// Position of the leaf.
    pub index: u64,
    /// Number of leaves in the tree.
    pub size: u64,
    /// Sibling hashes from the leaf upward.
    pub path: Vec<Hash>,
}

/// The proof for `leaves[index]`, or `None` if `index` is out of range.
pub fn merkle_proof(leaves: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, i) = (0usize, leaves.len(), index);
    // Walk down, recording the sibling subtree roots, then reverse to leaf-first order.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if i < lo + k {
            path.push(root_of(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(root_of(&leaves[lo..lo + k]));
            lo += k;
        }
    }
    path.reverse();
    Some(MerkleProof { index: index as u64, size: leaves.len() as u64, path })
}

/// The proofs for `leaves[i]` of every `i` in `indices` (ascending, each in range; else `None`), equal to
/// [`merkle_proof`] of each but sharing the subtree hashes: about `2 * leaves.len()` hashes in all rather than
/// that many per proof (a block's messages are proven together for `worker_sync`).
pub fn merkle_proofs(leaves: &[Hash], indices: &[usize]) -> Option<Vec<MerkleProof>> {
    if indices.windows(2).any(|w| w[0] >= w[1]) || indices.last().is_some_and(|&i| i >= leaves.len()) {
        return None;
    }
    let mut paths = vec![Vec::new(); indices.len()];
    if !indices.is_empty() {
        walk(leaves, 0, indices, &mut paths);
    }
    let size = leaves.len() as u64;
    Some(indices.iter().zip(paths).map(|(&i, path)| MerkleProof { index: i as u64, size, path }).collect())
}

/// The root of `leaves` (which start at index `lo` of the whole tree), pushing onto `paths[j]` the sibling at
/// each level of `wanted[j]`, leaf-first.
fn walk(leaves: &[Hash], lo: usize, wanted: &[usize], paths: &mut [Vec<Hash>]) -> Hash {
    if wanted.is_empty() {
        return root_of(leaves);
    }
    if leaves.len() == 1 {
        return leaf_hash(&leaves[0]);
    }
    let k = split(leaves.len());
    let cut = wanted.partition_point(|&i| i < lo + k);
    let (left_paths, right_paths) = paths.split_at_mut(cut);
    let left = walk(&leaves[..k], lo, &wanted[..cut], left_paths);
    let right = walk(&leaves[k..], lo + k, &wanted[cut..], right_paths);
    for p in left_paths.iter_mut() {
        p.push(right);
    }
    for p in right_paths.iter_mut() {
        p.push(left);
    }
    node_hash(&left, &right)
}

/// Whether `proof` shows `leaf` at `proof.index` under `root`.
pub fn verify_merkle_proof(root: &Hash, leaf: &Hash, proof: &MerkleProof) -> bool {
    if proof.index >= proof.size {
        return false;
    }
    // Recompute the directions top-down, then fold bottom-up.
    let mut dirs = Vec::new();
    let (mut lo, mut hi, i) = (0u64, proof.size, proof.index);
    while hi - lo > 1 {
        let mut k = 1;
        while k * 2 < hi - lo {
            k *= 2;
        }
        if i < lo + k {
            dirs.push(true); // leaf side is left
            hi = lo + k;
        } else {
            dirs.push(false);
            lo += k;
        }
    }
    if dirs.len() != proof.path.len() {
        return false;
    }
    let mut acc = leaf_hash(leaf);
    for (sib, left) in proof.path.iter().zip(dirs.iter().rev()) {
        acc = if *left { node_hash(&acc, sib) } else { node_hash(sib, &acc) };
    }
    acc == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| sha256(&[&(i as u64).to_le_bytes()])).collect()
    }

    #[test]
    fn proofs_made_together_equal_the_single_proofs_of_the_same_leaves() {
        for n in 1..40 {
            let l = leaves(n);
            let all: Vec<usize> = (0..n).collect();
            let single: Vec<MerkleProof> = all.iter().map(|&i| merkle_proof(&l, i).expect("in range")).collect();
            assert_eq!(merkle_proofs(&l, &all).expect("valid indices"), single, "all {n}");
            let some: Vec<usize> = (0..n).filter(|i| i % 3 == 1).collect();
            let single: Vec<MerkleProof> = some.iter().map(|&i| merkle_proof(&l, i).expect("in range")).collect();
            assert_eq!(merkle_proofs(&l, &some).expect("valid indices"), single, "some {n}");
        }
        assert_eq!(merkle_proofs(&leaves(3), &[]), Some(Vec::new()));
        assert_eq!(merkle_proofs(&leaves(3), &[3]), None, "out of range");
        assert_eq!(merkle_proofs(&leaves(3), &[1, 1]), None, "not ascending");
    }

    #[test]
    fn every_leaf_of_every_small_tree_has_a_valid_proof() {
        for n in 1..20 {
            let l = leaves(n);
            let root = merkle_root(&l);
            for i in 0..n {
                let p = merkle_proof(&l, i).expect("in range");
                assert!(verify_merkle_proof(&root, &l[i], &p), "n={n} i={i}");
            }
        }
    }

    #[test]
    fn a_proof_for_another_leaf_or_position_fails() {
        let l = leaves(7);
        let root = merkle_root(&l);
        let mut p = merkle_proof(&l, 2).expect("in range");
        assert!(!verify_merkle_proof(&root, &l[3], &p));
        p.index = 3;
        assert!(!verify_merkle_proof(&root, &l[2], &p));
        p.index = 9;
        assert!(!verify_merkle_proof(&root, &l[2], &p));
    }

    #[test]
    fn the_empty_tree_has_the_zero_root() {
        assert_eq!(merkle_root(&[]), Hash::ZERO);
    }
}
