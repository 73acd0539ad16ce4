//! Why an invocation failed.

/// Why loading a contract or running one of its methods failed. None of these leave the engine unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The invocation used its whole gas budget (or, for queries, passed its wall-clock deadline).
    #[error("out of gas")]
    OutOfGas,
    /// The JavaScript heap limit or the wasm memory limit was reached.
    #[error("out of memory")]
    OutOfMemory,
    /// The contract threw (JavaScript) or trapped (wasm).
    #[error("contract trapped: {0}")]
    Trap(String),
    /// The code is not a valid module (syntax error, invalid wasm, missing or wrong imports, too large).
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The contract exports no function of that name.
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// The host failed, or the contract passed a bad argument to a host function.
    #[error("host error: {0}")]
    Host(String),
    /// A per-invocation limit on sizes was exceeded (key, value, output, random length), or the limits given to
    /// [`Engine::new`](crate::Engine::new) are invalid.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A contract call would nest deeper than the limit.
    #[error("call depth limit {0} exceeded")]
    DepthExceeded(u32),
    /// The contract used `fetch` in a replicated command.
    #[error("{0} is not allowed in a command")]
    NotAllowedInCommand(&'static str),
    /// An agent's handler returned a promise that can never settle (nothing is left to run).
    #[error("the handler's promise never settled (it awaits something nothing will resolve)")]
    NeverSettled,
    /// An agent's handler returned something else than a `Response`.
    #[error("the handler returned {0}, not a Response")]
    NotAResponse(String),
}

/// A failed invocation: the error and the gas used up to the failure (which the worker may still charge).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error} (gas used {gas_used})")]
pub struct Failure {
    /// What went wrong.
    pub error: EngineError,
    /// Gas used before the failure.
    pub gas_used: u64,
}
