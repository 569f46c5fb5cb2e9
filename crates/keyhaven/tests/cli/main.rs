//! Black-box tests of the `keyhaven` binary, linked as one test binary: the commands
//! and their error reporting ([`cli`]), bounds under load ([`limits`]), two nodes on one database ([`nodes`]) and usage
//! control across nodes ([`cluster`]), audit streaming and exports ([`audit_sinks`]),
//! `admin import-keys` ([`import_keys`]), keys made by other systems imported and
//! verified ([`import_real`]) and recent verifications kept over a graceful stop
//! ([`recent`]). The
//! helpers they share are in [`support`].

#[macro_use]
mod support;

mod audit_sinks;
mod cli;
mod cluster;
mod import_keys;
mod import_real;
mod limits;
mod nodes;
mod recent;
