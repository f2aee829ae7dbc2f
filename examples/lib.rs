//! Shared glue for the examples of this workspace (kept empty until an example needs it).
