//! File writers: RELION STAR and IMOD binary models.

pub mod imod;
pub mod star;
