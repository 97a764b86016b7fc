//! Many rows in few statements.
//!
//! A flush of usage counts writes thousands of rows a second. PostgreSQL takes them as one
//! JSON array per statement, unpacked by `jsonb_array_elements` ([`json`]); on SQLite,
//! unpacking JSON cost three times what the upsert itself does (each row's fields are parsed
//! again from text), so SQLite gets multi-row `VALUES` with bound parameters instead
//! ([`pieces`], [`values`]).

use crate::StoreError;

/// Rows per statement on PostgreSQL, sent as one JSON parameter.
pub(crate) const JSON_ROWS: usize = 5_000;

/// `rows` as one JSON array (of arrays), the parameter of a PostgreSQL batch statement.
pub(crate) fn json<T: serde::Serialize>(rows: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

/// Rows per statement: a batch is cut into pieces of these sizes, largest first, so that only
/// these few statement texts are ever prepared and they stay in the connection's statement
/// cache. Pieces are small enough that each statement runs for well under a millisecond:
/// on a machine where the server shares a core with SQLite's thread, requests wait for at
/// most one statement, not for a whole flush.
const PIECES: [usize; 4] = [256, 32, 4, 1];

/// Cuts `rows` into pieces of the sizes in [`PIECES`].
pub(crate) fn pieces<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    piece_sizes(rows.len()).map(move |size| {
        let (piece, rest) = rows.split_at(size);
        rows = rest;
        piece
    })
}

/// The sizes [`pieces`] cuts `rows` rows into, in order.
pub(crate) fn piece_sizes(mut rows: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = PIECES.into_iter().find(|&size| size <= rows)?;
        rows -= size;
        Some(size)
    })
}

/// `(?, ?), (?, ?)`: `rows` groups of `columns` placeholders. Anonymous ones: SQLite looks up
/// a numbered one (`$7`) by a linear search through the statement's parameter names, so
/// binding thousands of them costs the square of their count.
pub(crate) fn values(rows: usize, columns: usize) -> String {
    // Written into one string: repeating a row's text `rows` times made an allocation per row.
    // A row is `(`, `?` and `, ?` for the rest, `)`: three bytes a column; two between rows.
    let mut text = String::with_capacity(rows * (columns * 3 + 2));
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for c in 0..columns {
            text.push_str(if c == 0 { "?" } else { ", ?" });
        }
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_rows_in_order_with_few_sizes() {
        let rows: Vec<usize> = (0..10_000).collect();
        let cut: Vec<&[usize]> = pieces(&rows).collect();
        assert_eq!(cut.concat(), rows);
        assert!(cut.iter().all(|p| PIECES.contains(&p.len())));
        assert_eq!(cut.len(), 39 + 4);
        assert_eq!(pieces::<u8>(&[]).count(), 0);
        let sizes: Vec<usize> = piece_sizes(10_000).collect();
        assert_eq!(sizes, cut.iter().map(|p| p.len()).collect::<Vec<_>>());
    }

    #[test]
    fn placeholders() {
        assert_eq!(values(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(values(1, 1), "(?)");
        assert_eq!(values(0, 9), "");
        assert_eq!(values(256, 9).len(), 256 * 27 + 255 * 2);
    }
}
