//! SIP (RFC 3261) for a recording server: message parsing and framing
//! ([`message`]), the sans-IO transaction and dialog core ([`core`]),
//! which stream connections may stay open ([`conns`]) and
//! overload detection ([`overload`]).

pub mod conns;
pub mod core;
pub mod message;
pub mod overload;
pub mod transaction;
