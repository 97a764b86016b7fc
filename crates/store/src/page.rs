//! Cursor pagination, newest first.

/// Where a page starts: strictly older than this `(created_at, id)` position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub id: String,
}

impl Cursor {
    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at, self.id)
    }

    /// Reads a cursor back; `None` when it was not made by [`Cursor::encode`].
    pub fn decode(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        let at: i64 = at.parse().ok()?;
        let id_ok = (1..=100).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        id_ok.then(|| Cursor {
            at,
            id: id.to_string(),
        })
    }
}

/// A page request: at most `limit` items after `cursor`.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// Every item, for the command line.
    pub fn all() -> Self {
        Self {
            limit: u32::MAX,
            cursor: None,
        }
    }

    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }

    /// Rows to fetch: one more than asked, to learn whether another page exists.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit).saturating_add(1)
    }

    /// The cursor as bind values; with no cursor, a position after everything.
    pub(crate) fn bounds(&self) -> (i64, String) {
        match &self.cursor {
            Some(c) => (c.at, c.id.clone()),
            None => (i64::MAX, String::new()),
        }
    }
}

/// One page of results.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Trims the extra row fetched by [`PageRequest::fetch_limit`] and derives the next cursor.
    pub(crate) fn from_rows(
        mut items: Vec<T>,
        req: &PageRequest,
        pos: impl Fn(&T) -> Cursor,
    ) -> Self {
        let has_more = items.len() as u64 > u64::from(req.limit);
        if has_more {
            items.truncate(req.limit as usize);
        }
        let next = if has_more {
            items.last().map(pos)
        } else {
            None
        };
        Self { items, next }
    }
}
