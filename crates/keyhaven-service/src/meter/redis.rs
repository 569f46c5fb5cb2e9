//! The Redis counter engine — written next.
