//! Generated bindings, one module per released WIT version (`wit/v*/`), each with the
//! conversions between its types and the host's own (`crate::prompt`). A new WIT version
//! gets a new module here; older ones keep loading old guests.

pub mod v0_1_0;
