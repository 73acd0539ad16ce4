#!/usr/bin/env bash
# Starts a 4-validator network as 4 separate `umbra node` processes on 127.0.0.1, plus a fifth
# non-validator node (v4) that follows the chain and would vote once staking puts it in a committee.
#
#   scripts/local-net.sh [DIR]        # default DIR: ./local-net
#
# Each validator gets its own key, config and data directory under DIR/vN (made by `umbra node init`);
# `umbra genesis new` writes DIR/genesis.json and points every config at it and at its peers. The dev
# account (the key `umbra dev` puts in your keystore as "dev") is funded so the CLI works at once:
#   umbra --rpc http://127.0.0.1:19944 status
# Logs are in DIR/vN/node.log; Ctrl-C stops all four. Run it again to resume from disk.
set -euo pipefail
dir=${1:-local-net}
umbra=${UMBRA:-umbra}
command -v "$umbra" >/dev/null || umbra="cargo run --release --quiet --"
dev_address=umbra1gdmf88dd58l7ls3ynd9y464pcsp83heplvtnehsezlaxdkrrjcws6tpwjh

if [ ! -f "$dir/genesis.json" ]; then
  mkdir -p "$dir"
  nodes=()
  for i in 0 1 2 3 4; do
    $umbra node init --dir "$dir/v$i" --name "v$i" --p2p-listen "127.0.0.1:$((31333 + i))" --rpc-listen "127.0.0.1:$((19944 + i))" >/dev/null
    if [ "$i" -lt 4 ]; then nodes+=(--node "$dir/v$i"); else nodes+=(--follower "$dir/v$i"); fi
  done
  $umbra genesis new --chain-id umbra-local --dev-tee --epoch-length 100 "${nodes[@]}" --alloc "$dev_address=100000000" --out "$dir/genesis.json"
fi

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 0 1 2 3 4; do
  $umbra node --config "$dir/v$i/node.toml" >"$dir/v$i/node.log" 2>&1 &
  pids+=($!)
  echo "v$i: rpc http://127.0.0.1:$((19944 + i)), log $dir/v$i/node.log (pid $!)"
done
echo "4 validators and 1 follower (v4) running; Ctrl-C stops them"
echo "bond the follower into the next epoch's committee:"
echo "  umbra --rpc http://127.0.0.1:19944 staking bond --from dev --amount 5000 --validator-key $(cat "$dir/v4/validator.pub")"
echo "(the 'dev' key is the one 'umbra dev' adds to your keystore)"
wait
