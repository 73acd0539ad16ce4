//! umbra-consensus
