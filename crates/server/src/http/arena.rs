//! Short header values and bodies written into a buffer of the thread's and handed out as
//! shared slices of it, instead of one allocation each.
//!
//! Only for values that live no longer than an answer: hyper copies header values into its
//! own buffer as it writes the head, and lets a body go once the socket took it. So when the
//! buffer is used up it is usually free to be written again from the start, and only while
//! an answer still holds a piece of it is a new one allocated. A client that stops reading
//! keeps its answer's buffer (16 KiB) alive until it reads or hangs up; its socket's own send
//! buffer, full by then, holds more. A value kept for longer than an answer (a request's id,
//! kept while the request runs) would keep the whole buffer alive and must not come from here.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// How much each buffer holds: the values of some hundreds of answers.
const SIZE: usize = 16 * 1024;

/// `value`, copied into the thread's buffer.
pub fn copy(value: &[u8]) -> Bytes {
    concat(&[value])
}

/// `pieces` one after the other, written into the thread's buffer.
pub fn concat(pieces: &[&[u8]]) -> Bytes {
    thread_local! {
        static BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let len = pieces.iter().map(|piece| piece.len()).sum();
    if len > SIZE / 4 {
        // Not worth a piece of the buffer, which would grow to hold it and stay that size.
        return Bytes::from(pieces.concat());
    }
    // Its own allocation also while the thread is being torn down, when its buffer is gone.
    BUFFER
        .try_with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => concat_into(&mut buffer, pieces, len),
            Err(_) => Bytes::from(pieces.concat()),
        })
        .unwrap_or_else(|_| Bytes::from(pieces.concat()))
}

fn concat_into(buffer: &mut BytesMut, pieces: &[&[u8]], len: usize) -> Bytes {
    if buffer.capacity() < len {
        buffer.reserve(SIZE);
    }
    for piece in pieces {
        buffer.extend_from_slice(piece);
    }
    buffer.split().freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_written_past_the_buffers_end_are_whole_and_unchanged() {
        // Enough values to use the buffer up several times over, half of them still held (so
        // that it cannot always start again), compared at the end.
        let mut held = Vec::new();
        for i in 0..3 * SIZE / 8 {
            let text = format!("value {i}");
            let value = copy(text.as_bytes());
            if i % 2 == 0 {
                held.push((text, value));
            }
        }
        for (text, value) in held {
            assert_eq!(value, text.as_bytes());
        }
    }

    #[test]
    fn pieces_are_put_together_in_order() {
        assert_eq!(concat(&[b"ab", b"", b"cde"]), &b"abcde"[..]);
        // Too long for the buffer: put together on its own, in the same order.
        let long = vec![b'y'; SIZE];
        assert_eq!(concat(&[b"x", &long]), [&b"x"[..], &long].concat());
        // Through the buffer as it is used up, pieces of half of them still held.
        let mut held = Vec::new();
        for i in 0..3 * SIZE / 8 {
            let (head, tail) = (format!("{i}:"), format!("{}", i * 7));
            let value = concat(&[head.as_bytes(), b"-", tail.as_bytes()]);
            if i % 2 == 0 {
                held.push((format!("{head}-{tail}"), value));
            }
        }
        for (text, value) in held {
            assert_eq!(value, text.as_bytes());
        }
    }

    #[test]
    fn a_value_longer_than_the_buffer_is_kept_whole() {
        let long = vec![b'x'; 3 * SIZE];
        assert_eq!(copy(&long), long);
    }
}
