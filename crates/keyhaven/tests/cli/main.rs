//! Black-box tests of the `keyhaven` binary, linked as one test binary: the commands
//! and their error reporting ([`cli`]), bounds under load ([`limits`]) and two nodes on one database ([`nodes`]). The
//! helpers they share are in [`support`].

#[macro_use]
mod support;

mod cli;
mod limits;
mod nodes;
