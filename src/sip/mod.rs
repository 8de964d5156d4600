//! SIP (RFC 3261) for a recording server: message parsing and framing
//! ([`message`]) and the sans-IO transaction and dialog core ([`core`]).

pub mod core;
pub mod message;
pub mod transaction;
