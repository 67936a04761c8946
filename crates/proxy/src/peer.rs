//! Which local process is on the other end of a TCP connection.
//!
//! The kernel lists every TCP socket in `/proc/net/tcp{,6}` with its inode;
//! the client's socket is the one whose local address is our peer address
//! and whose remote address is our listening address. The process holding
//! that inode is found by scanning `/proc/<pid>/fd` for `socket:[inode]`.
//! Every read is bracketed by the process start time so a reused pid is
//! never misattributed.
//!
//! The implementation is shared with the server's `unix` authentication
//! method and lives in `idmint-procid`; this module keeps the proxy's
//! historical paths (`idmint_proxy::peer::ProcFs`, …).

pub use idmint_procid::{stamps_match, PeerError, ProcFs, ProcessInfo};
