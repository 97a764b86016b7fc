//! Text helpers shared by the generators: tidying user input, cutting excerpts, and reading a
//! model's free-form markdown answer into a [`Draft`].

use super::{Draft, GenerationError};

/// Excerpts are cut to about this many characters (plus an ellipsis).
pub(crate) const EXCERPT_CHARS: usize = 200;

/// Titles longer than this are cut: a model that ignores the format can put a whole
/// paragraph on its first line.
const TITLE_CHARS: usize = 150;

/// Used when a request's topic is blank, so a draft always has a title.
const UNTITLED: &str = "Untitled draft";

/// Collapses every run of whitespace, newlines included, into one space. User text goes
/// into headings and prompts, where a newline would change the structure.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The title to use when nothing better is known: the tidied topic.
pub(crate) fn fallback_title(topic: &str) -> String {
    let topic = one_line(topic);
    if topic.is_empty() {
        UNTITLED.to_owned()
    } else {
        truncate_words(&topic, TITLE_CHARS)
    }
}

/// The first prose paragraph of a markdown `body`, as plain text of about
/// [`EXCERPT_CHARS`] characters. Headings, rules and code are skipped.
pub(crate) fn excerpt(body: &str) -> String {
    let mut in_fence = false;
    let mut lines: Vec<String> = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        if is_fence(t) {
            in_fence = !in_fence;
            if !lines.is_empty() {
                break;
            }
            continue;
        }
        if in_fence {
            continue;
        }
        if t.is_empty() || t.starts_with('#') || is_rule(t) {
            if !lines.is_empty() {
                break;
            }
            continue;
        }
        lines.push(plain(strip_block_marker(t)));
    }
    truncate_words(&one_line(&lines.join(" ")), EXCERPT_CHARS)
}

/// Cuts `s` to at most `max` characters at a word boundary and marks the cut with `…`.
pub(crate) fn truncate_words(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    // Back off to the last space so no word is split; a single huge "word" is cut anyway.
    let kept = match cut.rfind(char::is_whitespace) {
        Some(i) if i > 0 => &cut[..i],
        _ => cut.as_str(),
    };
    let kept = kept.trim_end_matches(|c: char| c.is_whitespace() || ",;:-–—".contains(c));
    format!("{kept}…")
}

/// Reads a model's answer into a draft. The prompt asks for `# Title` on the first line and
/// markdown after it, but models stray: they wrap everything in a code fence, prefix
/// reasoning in `<think>` tags, write `Title: …`, or skip the title. All of that is accepted;
/// only an answer with nothing usable in it is an error.
pub(crate) fn draft_from_markdown(answer: &str, topic: &str) -> Result<Draft, GenerationError> {
    let text = answer.replace("\r\n", "\n");
    let mut text = text.trim();

    // Reasoning models (DeepSeek-R1, Qwen3 through Ollama) put their thinking in the content.
    if let Some(rest) = text.strip_prefix("<think>") {
        text = match rest.find("</think>") {
            Some(end) => rest[end + "</think>".len()..].trim(),
            None => "",
        };
    }
    let text = unwrap_fence(text);

    let (title, body) = split_title(text);
    let body = demote_h1(body.trim());
    if body.trim().is_empty() {
        return Err(GenerationError::BadResponse(
            "the answer had no article text".to_owned(),
        ));
    }
    let title = title
        .map(clean_title)
        .filter(|t| !t.is_empty())
        .map(|t| truncate_words(&t, TITLE_CHARS))
        .unwrap_or_else(|| fallback_title(topic));
    let excerpt = excerpt(&body);
    Ok(Draft {
        title,
        excerpt,
        body,
    })
}

/// Removes a code fence around the whole answer (```` ```markdown … ``` ````).
fn unwrap_fence(text: &str) -> &str {
    if !text.starts_with("```") || !text.ends_with("```") {
        return text;
    }
    match text.split_once('\n') {
        Some((_opener, rest)) => rest.strip_suffix("```").unwrap_or(rest).trim(),
        None => text,
    }
}

/// Splits off the title line when the first non-blank line is one.
fn split_title(text: &str) -> (Option<&str>, &str) {
    let text = text.trim_start();
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let first = first.trim();
    if let Some(title) = first.strip_prefix("# ") {
        return (Some(title), rest);
    }
    // `Title: …`, often in bold: `**Title: …**`.
    let probe = first.trim_matches('*').trim();
    if probe.len() > 6 && probe.is_char_boundary(6) && probe[..6].eq_ignore_ascii_case("title:") {
        return (Some(&probe[6..]), rest);
    }
    (None, text)
}

/// Strips decoration models put around titles: bold, quotes, a closing `#` run.
fn clean_title(title: &str) -> String {
    let t = title.trim().trim_end_matches('#').trim();
    let t = t
        .strip_prefix("**")
        .and_then(|t| t.strip_suffix("**"))
        .unwrap_or(t);
    let t = t.trim_matches(|c| c == '"' || c == '\u{201c}' || c == '\u{201d}');
    one_line(&plain(t))
}

/// Turns `# ` headings in the body into `## `: the title is the page's only first-level
/// heading. Code blocks are left alone, where `#` starts a comment.
fn demote_h1(body: &str) -> String {
    let mut in_fence = false;
    let mut out = String::with_capacity(body.len() + 16);
    for line in body.lines() {
        if is_fence(line.trim()) {
            in_fence = !in_fence;
        }
        if !in_fence && line.starts_with("# ") {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}

fn is_fence(line: &str) -> bool {
    line.starts_with("```") || line.starts_with("~~~")
}

fn is_rule(line: &str) -> bool {
    line.len() >= 3
        && line
            .chars()
            .all(|c| c == '-' || c == '*' || c == '_' || c == ' ')
}

/// Drops a leading quote or list marker (`> `, `- `, `* `, `+ `, `1. `).
fn strip_block_marker(line: &str) -> &str {
    let line = line.trim_start_matches('>').trim_start();
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(marker) {
            return rest;
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        if let Some(rest) = line[digits..].strip_prefix(". ") {
            return rest;
        }
    }
    line
}

/// Removes inline markdown: emphasis stars, backticks, and link or image syntax (keeping the
/// text). Underscores stay, since they are common inside words and identifiers.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '[' || (c == '!' && rest[1..].starts_with('[')) {
            let open = if c == '!' { 2 } else { 1 };
            if let Some((text, after)) = link(&rest[open..]) {
                out.push_str(&plain(text));
                rest = after;
                continue;
            }
        }
        if c != '*' && c != '`' {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Reads `text](target)` and returns the text and what follows the link.
fn link(s: &str) -> Option<(&str, &str)> {
    let close = s.find(']')?;
    let after = s[close + 1..].strip_prefix('(')?;
    let end = after.find(')')?;
    Some((&s[..close], &after[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_line_becomes_the_title_and_the_rest_the_body() {
        let d = draft_from_markdown(
            "# Ten Tips for Tomatoes\n\nTomatoes love **sun**.\nWater them often.\n\n## Soil\n\nRich soil.",
            "tomatoes",
        )
        .unwrap();
        assert_eq!(d.title, "Ten Tips for Tomatoes");
        assert!(d.body.starts_with("Tomatoes love **sun**."));
        assert!(d.body.contains("## Soil"));
        assert_eq!(d.excerpt, "Tomatoes love sun. Water them often.");
    }

    #[test]
    fn without_a_title_line_the_topic_is_the_title() {
        let d = draft_from_markdown("Just some text.\n\n## Part\n\nMore.", "  Growing\nbasil ")
            .unwrap();
        assert_eq!(d.title, "Growing basil");
        assert!(d.body.starts_with("Just some text."));
        assert_eq!(d.excerpt, "Just some text.");
    }

    #[test]
    fn reasoning_fences_and_crlf_are_removed() {
        let answer = "<think>\nThe user wants a post.\n</think>\n\n```markdown\r\n# Bees\r\n\r\nBees are great.\r\n```";
        let d = draft_from_markdown(answer, "t").unwrap();
        assert_eq!(d.title, "Bees");
        assert_eq!(d.body, "Bees are great.");
        assert_eq!(d.excerpt, "Bees are great.");
    }

    #[test]
    fn title_prefixes_and_decorations_are_tolerated() {
        let d = draft_from_markdown("**Title: Bees and You**\nBees are great.", "t").unwrap();
        assert_eq!(d.title, "Bees and You");
        assert_eq!(d.body, "Bees are great.");

        let d = draft_from_markdown("title: \"Bees\"\n\nBuzz.", "t").unwrap();
        assert_eq!(d.title, "Bees");

        let d = draft_from_markdown("# **Bees** #\n\nBuzz.", "t").unwrap();
        assert_eq!(d.title, "Bees");
    }

    #[test]
    fn further_first_level_headings_are_demoted_outside_code() {
        let d =
            draft_from_markdown("# Bees\n\n# Intro\n\nHi.\n```sh\n# comment\n```", "t").unwrap();
        assert_eq!(d.title, "Bees");
        assert!(d.body.starts_with("## Intro"), "{}", d.body);
        assert!(
            d.body.contains("\n# comment\n"),
            "code comments stay: {}",
            d.body
        );
        assert_eq!(d.excerpt, "Hi.");
    }

    #[test]
    fn an_answer_without_article_text_is_a_bad_response() {
        for answer in [
            "",
            "   \n ",
            "# Only a title",
            "<think>still thinking",
            "```\n```",
        ] {
            let err = draft_from_markdown(answer, "t").unwrap_err();
            assert!(
                matches!(err, GenerationError::BadResponse(_)),
                "{answer:?}: {err}"
            );
        }
    }

    #[test]
    fn excerpts_skip_headings_and_code_and_are_cut_at_a_word() {
        let body = format!(
            "## Heading\n\n```\ncode\n```\n\n> {}\n\nSecond paragraph.",
            "word ".repeat(100)
        );
        let e = excerpt(&body);
        assert!(e.starts_with("word word"));
        assert!(e.ends_with("word…"), "{e}");
        assert!(e.chars().count() <= EXCERPT_CHARS + 1);
        assert!(!e.contains("Second"));
    }

    #[test]
    fn plain_keeps_link_text_and_underscores() {
        assert_eq!(
            plain(
                "See ![a cat](c.png) and [the `docs`](https://x.test/a_b) for snake_case **now**"
            ),
            "See a cat and the docs for snake_case now"
        );
        assert_eq!(plain("[not a link] (x)"), "[not a link] (x)");
        assert_eq!(strip_block_marker("12. Item"), "Item");
        assert_eq!(truncate_words("short", 10), "short");
        assert_eq!(truncate_words("alpha beta, gamma", 12), "alpha beta…");
        assert_eq!(fallback_title(" \n "), UNTITLED);
    }
}
