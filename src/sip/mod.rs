//! SIP (RFC 3261) for a recording server: message parsing and framing
//! ([`message`]), the sans-IO transaction and dialog core ([`core`]) and
//! overload detection ([`overload`]).

pub mod core;
pub mod message;
pub mod overload;
pub mod transaction;
