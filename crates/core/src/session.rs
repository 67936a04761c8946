//! Session tokens (being written).
