//! The sockets pitd serves: binding them (`socket`), the call socket (`calls`), the
//! control socket (`control`) and the Prometheus endpoint (`metrics_http`).

pub mod calls;
pub mod control;
pub mod metrics_http;
pub mod socket;
