//! umbra-node
