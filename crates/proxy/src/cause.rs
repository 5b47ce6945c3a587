//! Errors arrive wrapped: hyper's around h2's, ours inside hyper's body
//! errors. What a caller needs is the one error of a given type inside.

use std::error::Error;

/// The first error of type `T` in `e`'s chain of sources, `e` included.
pub fn find<'a, T: Error + 'static>(e: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}
