//! umbra-runtime
