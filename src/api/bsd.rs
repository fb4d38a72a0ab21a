//! BSD socket facade.
