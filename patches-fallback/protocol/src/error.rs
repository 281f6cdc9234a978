use std::io;

/// What went wrong between the wrapper and the supervisor, by step.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("cannot create the connection socketpair: {0}")]
    Socketpair(#[source] io::Error),
    #[error("cannot reach the supervisor over the escalate socket: {0}")]
    Rendezvous(#[source] io::Error),
    #[error("sending a frame: {0}")]
    Send(#[source] io::Error),
    #[error("receiving a frame: {0}")]
    Recv(#[source] io::Error),
    #[error("the other side closed the connection")]
    Closed,
    #[error("frame of {0} bytes exceeds the limit of {max} bytes", max = crate::MAX_FRAME)]
    FrameTooLarge(usize),
    #[error("{0} fds in one frame; at most {max} can be passed", max = crate::MAX_FDS)]
    TooManyFds(usize),
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected message: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("the fds frame lists {listed} fds but carries {attached}")]
    FdCountMismatch { listed: usize, attached: usize },
    #[error("rendezvous datagram without a connection fd or with a wrong greeting")]
    BadHello,
}
