//! What travels on each socket and pipe, one home per shape. Nothing here does I/O beyond
//! encoding and decoding bytes; `daemon` and `cli` both build on these types, so the JSON a
//! user sees from `pitctl status --json` is the very struct pitd sent.

pub mod call;
pub mod control;
pub mod event;
pub mod exposition;
pub mod frame;
pub mod status;
pub mod template;
pub mod worker;
