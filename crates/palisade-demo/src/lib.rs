//! Demo fixtures for Palisade.
//!
//! This crate holds the two pieces that `palisade demo` and the gateway's
//! integration tests need in order to show the gateway working end to end
//! without any real infrastructure:
//!
//! * [`pki`] — a throwaway certificate authority (built with `rcgen`) that
//!   issues short-lived leaf certificates for the gateway's TLS listener and
//!   writes them to disk atomically, so a certificate watcher never sees a
//!   half-written file.
//! * [`shop`] — "Ye Olde Shoppe", a deliberately careless legacy PHP-style
//!   shop served over plain HTTP/1.1. It leaks fingerprinting headers, sets
//!   cookies without security flags, reflects input without escaping, shows
//!   card numbers and e-mail addresses, leaks a PHP stack trace and redirects
//!   to `http://` URLs — everything the gateway in front of it is meant to
//!   fix or hide.
//!
//! Nothing here is meant for production use: the CA key lives only in
//! memory and the shop is insecure on purpose.

pub mod pki;
pub mod shop;
