//! SIP (RFC 3261) for a recording server: message parsing and framing
//! ([`message`]), the sans-IO transaction and dialog core ([`core`]), its
//! transaction machines ([`transaction`]) and one timer queue for all of
//! them ([`deadlines`]), which stream connections may stay open
//! ([`conns`]), and overload detection ([`overload`]).

pub mod conns;
pub mod core;
pub mod deadlines;
pub mod message;
pub mod overload;
pub mod transaction;
