//! umbra-sdk
