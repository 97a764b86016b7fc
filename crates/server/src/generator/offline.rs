//! The built-in generator. It is **template-based, not AI**: it assembles a structured
//! starting draft from fixed sentence templates, the request's topic and keywords, and a voice
//! picked from the tone. It needs no model and no network, so generation works out of the box,
//! and it is deterministic, so the same request always gives the same draft.

use super::markdown::{excerpt, fallback_title, one_line};
use super::{Draft, GenerateFuture, GenerationRequest, Generator, Length};

/// The built-in generator: **template-based, not AI**. It fills fixed sentence templates with
/// the request's topic and keywords, in a voice picked from the tone, into a draft with an
/// introduction, `##` sections (2, 4 or 7 by length) and a conclusion. No network; the same
/// request always gives the same draft.
#[derive(Clone, Copy, Debug, Default)]
pub struct OfflineGenerator;

impl OfflineGenerator {
    pub fn new() -> Self {
        Self
    }

    /// Writes the draft for `req` right away; [`Generator::generate`] wraps this.
    pub fn compose(&self, req: &GenerationRequest) -> Draft {
        Composer::new(req).draft()
    }
}

impl Generator for OfflineGenerator {
    fn generate<'a>(&'a self, req: &'a GenerationRequest) -> GenerateFuture<'a> {
        // Composing takes microseconds, so it runs inline instead of on a blocking thread.
        Box::pin(std::future::ready(Ok(self.compose(req))))
    }

    fn name(&self) -> &'static str {
        "offline"
    }
}

/// One `##` section: heading variants, sentences, and optionally a numbered list. The first
/// sentence opens the section; the others stand alone, so they can be taken in any order.
struct Theme {
    headings: [&'static str; 2],
    sentences: &'static [&'static str],
    steps_lead: &'static str,
    steps: &'static [&'static str],
}

// Templates name `{topic}` and `{focus}` (a keyword, or the topic) only as objects, never as the
// subject of a verb, so plural keywords ("houseplants") read as well as singular ones.
const THEMES: [Theme; 7] = [
    Theme {
        headings: ["What makes {focus} worth your time", "The case for {focus}"],
        sentences: &[
            "Getting {focus} right shapes results more than most people expect, which is why it deserves deliberate attention.",
            "When you handle {focus} well, everything around it tends to get easier, faster and more predictable.",
            "Neglecting {focus} rarely causes a crisis overnight; the cost shows up slowly, in rework and missed opportunities.",
            "The people who get the most out of {focus} are rarely the most talented; they are the most consistent.",
            "A little understanding of {focus} goes a long way, because the same few principles apply again and again.",
            "Attention to the details also compounds: each improvement makes the next one cheaper to achieve.",
            "It pays to treat {focus} as a habit rather than a one-off project.",
            "Even a modest investment of time here tends to pay for itself within weeks.",
            "A clear view of the subject also makes it easier to explain your choices to the people you work with.",
        ],
        steps_lead: "",
        steps: &[],
    },
    Theme {
        headings: ["The basics of {focus}", "Getting started with {focus}"],
        sentences: &[
            "Every good start with {focus} begins with a clear picture of what you want to achieve.",
            "Write down the outcome you are after, then the smallest step that moves you toward it.",
            "Resist the urge to master everything about {focus} at once; the fundamentals carry most of the weight.",
            "Learn the vocabulary early, since much of the confusion around {focus} comes from words used loosely.",
            "Find one trustworthy source on {focus} and follow it closely before comparing it with others.",
            "Early on, simple and repeatable beats clever and fragile every time.",
            "Keep notes as you go; they become a reference for {focus} tailored to the way you actually work.",
            "Once the basics feel routine, you have a solid base for everything that follows.",
            "Ask questions freely at this stage, because nobody expects a beginner to know the answers.",
        ],
        steps_lead: "",
        steps: &[],
    },
    Theme {
        headings: ["A practical approach to {focus}", "Putting {focus} into practice"],
        sentences: &[
            "Theory only gets you so far; progress with {focus} becomes real when you apply it to a concrete situation.",
            "Pick a small, low-risk area to practise on, where mistakes are cheap and lessons come quickly.",
            "A short, repeated loop turns work on {focus} from guesswork into a series of small, checkable bets.",
            "Share what you learn with the people around you; explaining {focus} is one of the fastest ways to understand it.",
            "Expect some attempts to fail, and treat each failure as information rather than a verdict.",
            "Over time, practising this way becomes second nature, and the results start to speak for themselves.",
            "The guiding rule is simple: start small and keep going.",
        ],
        steps_lead: "A simple routine keeps things moving:",
        steps: &[
            "Define what success with {focus} looks like, in one sentence.",
            "Choose one change to make and note your starting point.",
            "Make the change and give it enough time to show an effect.",
            "Review the result honestly, then keep, adjust or drop the change.",
            "Repeat, building on whatever worked.",
        ],
    },
    Theme {
        headings: ["Common mistakes with {focus}", "Pitfalls to avoid with {focus}"],
        sentences: &[
            "The most common mistake with {focus} is trying to do too much, too soon.",
            "Copying someone else's approach without asking whether their situation matches yours is another trap.",
            "Many people underestimate how long work on {focus} takes to show results, and give up just before it pays off.",
            "Skipping the basics is tempting, but gaps there tend to resurface later at a higher cost.",
            "Be wary of advice that promises quick wins with {focus}; durable progress is rarely dramatic.",
            "Measuring the wrong thing is a quieter trap: it feels like progress while the real goal drifts.",
            "Do not go it alone for too long, because a second pair of eyes catches what habit hides.",
            "Mistakes like these are rarely fatal, and recognising them early is most of the cure.",
            "Changing too many things at once hides which change actually made the difference.",
        ],
        steps_lead: "",
        steps: &[],
    },
    Theme {
        headings: ["Tools and resources for {focus}", "What you need for {focus}"],
        sentences: &[
            "You do not need much to get going with {focus}, but a few well-chosen resources help.",
            "Start with whatever you already have, and add tools only when a real need appears.",
            "A simple checklist is often the most useful tool of all, because it makes good practice repeatable.",
            "Look for communities where people discuss {focus} openly, including what went wrong.",
            "Books and long-form guides are worth the time for depth, while short articles suit specific questions.",
            "Whatever you choose, prefer resources that explain why, not only how.",
            "Review your toolkit every few months and retire anything you no longer use.",
            "The best setup for {focus} is the one you actually use, not the one with the most features.",
            "Free resources are often as good as paid ones when you are starting out with {focus}.",
        ],
        steps_lead: "",
        steps: &[],
    },
    Theme {
        headings: ["Measuring progress on {focus}", "Tracking results with {focus}"],
        sentences: &[
            "Progress with {focus} is easier to sustain when you can see it.",
            "Choose one or two signals that reflect the outcome you care about, rather than a dashboard of everything.",
            "Record a baseline before you change anything, so that later comparisons mean something.",
            "Check in on a regular rhythm, weekly or monthly, instead of reacting to every small fluctuation.",
            "When a number moves, ask what else changed at the same time before drawing conclusions.",
            "Qualitative feedback counts too: how work on {focus} feels day to day is a signal in its own right.",
            "Celebrate the milestones, because visible wins keep motivation high.",
            "If the signals stay flat, that is useful to know: it tells you where to adjust.",
            "Write down what you expect before each change, so that the results can surprise you in useful ways.",
        ],
        steps_lead: "",
        steps: &[],
    },
    Theme {
        headings: ["Looking ahead with {focus}", "What comes next for {focus}"],
        sentences: &[
            "Thinking about {focus} keeps evolving, and the practices that work today will be refined tomorrow.",
            "Staying curious is the best way to keep up without chasing every trend.",
            "New tools will keep appearing, but the underlying principles of {focus} change slowly.",
            "It is worth revisiting your approach to {focus} once or twice a year to see what has shifted.",
            "Those who benefit most over time keep learning in small, steady doses.",
            "Whatever comes next, the fundamentals covered here remain a reliable foundation.",
            "Expect the conversation around {focus} to keep growing, and with it the range of good ideas to borrow.",
            "The habits you build now make it easier to adapt to whatever changes around {focus}.",
            "Keep an eye on what practitioners share, and test new ideas on a small scale before adopting them.",
        ],
        steps_lead: "",
        steps: &[],
    },
];

/// Which themes each length uses, in order.
fn themes(length: Length) -> &'static [usize] {
    match length {
        Length::Short => &[0, 2],
        Length::Medium => &[0, 1, 2, 3],
        Length::Long => &[0, 1, 2, 3, 4, 5, 6],
    }
}

fn titles(length: Length) -> &'static [&'static str] {
    match length {
        Length::Short => &[
            "{topic}: A Quick Guide",
            "{topic} in Brief",
            "{topic}: Where to Start",
        ],
        Length::Medium => &[
            "A Practical Guide to {topic}",
            "{topic}, Explained",
            "What to Know About {topic}",
        ],
        Length::Long => &[
            "The Complete Guide to {topic}",
            "{topic}: An In-Depth Guide",
            "Everything You Need to Know About {topic}",
        ],
    }
}

const INTRO: &[&str] = &[
    "This guide walks through the essentials step by step, without assuming prior expertise.",
    "You will find practical advice you can apply straight away, along with the reasoning behind it.",
    "The aim is not to cover everything, but to cover what makes the biggest difference.",
    "Each section stands on its own, so feel free to jump to the part that matters most to you.",
    "By the end, you should have a clear plan for your next steps.",
];

const CONCLUSION: &[&str] = &[
    "Working on {topic} is not something you finish; it is something you get steadily better at.",
    "The ideas above are most useful when you apply them one at a time, in your own context.",
    "Start with the step that seems easiest, and let early progress build momentum.",
    "Come back to this guide whenever you need a refresher on the essentials.",
    "Above all, be patient: consistent effort beats bursts of intensity.",
];

/// How the tone colours the draft: the opening, asides between sections, and the close.
struct Voice {
    /// Words that select this voice when they appear in the requested tone.
    cues: &'static [&'static str],
    hooks: &'static [&'static str],
    asides: &'static [&'static str],
    wrap_up: &'static str,
    closings: &'static [&'static str],
    site: &'static str,
}

const VOICES: [Voice; 5] = [
    Voice {
        cues: &["friendly", "casual", "conversational", "warm", "informal", "relaxed"],
        hooks: &[
            "Let's talk about {topic}.",
            "If {topic} has been on your mind lately, you're in good company.",
            "Grab a coffee: today we're digging into {topic}.",
        ],
        asides: &[
            "Don't worry if this feels like a lot at first.",
            "Take it one step at a time; there's no rush.",
            "Honestly, this part is easier than it sounds.",
            "You've got this.",
        ],
        wrap_up: "Wrapping up",
        closings: &[
            "Give one of these ideas a try this week and see how it goes.",
            "Pick one thing from this post and start there.",
        ],
        site: "Thanks for reading, and see you again soon on {site}!",
    },
    Voice {
        cues: &["formal", "professional", "academic", "authoritative", "technical", "business"],
        hooks: &[
            "This article examines {topic} and the considerations that matter most in practice.",
            "Anyone who wants dependable results should give careful attention to {topic}.",
            "The following overview sets out the essentials of {topic}.",
        ],
        asides: &[
            "This point is frequently overlooked.",
            "The same pattern holds across very different contexts.",
            "Experience consistently supports this approach.",
            "Each of these factors merits periodic review.",
        ],
        wrap_up: "Conclusion",
        closings: &[
            "A measured, consistent approach will serve you well.",
            "Applied with discipline, these principles yield reliable results.",
        ],
        site: "Further articles on related subjects are available on {site}.",
    },
    Voice {
        cues: &["playful", "humorous", "humourous", "funny", "witty", "fun", "lighthearted", "light-hearted", "quirky"],
        hooks: &[
            "Let's be honest: {topic} is not rocket science, but it is not nothing either.",
            "Confession time: {topic} is more fun than it looks.",
            "Buckle up, because {topic} has a few surprises in store.",
        ],
        asides: &[
            "Yes, really.",
            "Your future self will thank you, probably with snacks.",
            "No capes required.",
            "We promise this is the last pep talk. Almost.",
        ],
        wrap_up: "The bottom line",
        closings: &[
            "Now go forth and make it happen, with style.",
            "Off you go, and have fun with it.",
        ],
        site: "Come back to {site} and tell us how it went.",
    },
    Voice {
        cues: &["persuasive", "enthusiastic", "inspirational", "inspiring", "motivational", "excited", "energetic", "bold"],
        hooks: &[
            "Getting serious about {topic} can change the way you work, and starting is easier than you think.",
            "There has never been a better time to get serious about {topic}.",
            "Here is the good news: every bit of effort you put into {topic} pays off.",
        ],
        asides: &[
            "This is where things get exciting!",
            "Imagine what that could mean for you.",
            "Small steps, big results.",
            "The momentum builds faster than you expect.",
        ],
        wrap_up: "Your next step",
        closings: &[
            "There is no better moment to begin than today.",
            "Take the first step now, and let the results speak for themselves.",
        ],
        site: "Stay tuned to {site}: there is plenty more to come!",
    },
    // The neutral voice: no cues, so it is also the fallback for tones not listed above.
    Voice {
        cues: &[],
        hooks: &[
            "Few subjects reward a careful look as much as {topic}.",
            "If you have been meaning to understand {topic} properly, this guide is for you.",
            "Interest in {topic} keeps growing, and for good reason.",
        ],
        asides: &[
            "This is worth keeping in mind.",
            "The details vary, but the principle holds.",
            "It is a small point with large consequences.",
            "Context matters here more than rules.",
        ],
        wrap_up: "Final thoughts",
        closings: &[
            "Start small, stay consistent, and the results will follow.",
            "With these foundations in place, you are well prepared for what comes next.",
        ],
        site: "You will find more articles like this one on {site}.",
    },
];

fn voice(tone: &str) -> &'static Voice {
    let tone = tone.to_lowercase();
    let words: Vec<&str> = tone
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .collect();
    VOICES
        .iter()
        .find(|v| v.cues.iter().any(|cue| words.contains(cue)))
        .unwrap_or(&VOICES[VOICES.len() - 1])
}

/// Sentences per paragraph.
const PARAGRAPH: usize = 3;

/// The tidied request and the choices derived from it.
struct Composer {
    topic: String,
    keywords: Vec<String>,
    site: String,
    length: Length,
    voice: &'static Voice,
    seed: u64,
}

impl Composer {
    fn new(req: &GenerationRequest) -> Self {
        let topic = fallback_title(&req.topic);
        let mut keywords: Vec<String> = Vec::new();
        for k in req.keywords.iter().map(|k| one_line(k)) {
            if !k.is_empty() && !keywords.iter().any(|seen| seen.eq_ignore_ascii_case(&k)) {
                keywords.push(k);
            }
        }
        let tone = one_line(req.tone.as_deref().unwrap_or(""));
        let length_tag = format!("{:?}", req.length);
        let mut parts = vec![topic.as_str(), tone.as_str(), length_tag.as_str()];
        parts.extend(keywords.iter().map(String::as_str));
        Self {
            seed: fnv1a(&parts),
            voice: voice(&tone),
            topic,
            keywords,
            site: one_line(&req.website_name),
            length: req.length,
        }
    }

    fn draft(&self) -> Draft {
        let target = self.length.target_words();
        let themes = themes(self.length);
        let intro_words = target * 12 / 100;
        let conclusion_words = target / 10;
        let section_words = (target - intro_words - conclusion_words) / themes.len();

        let mut blocks: Vec<String> = Vec::new();
        blocks.extend(self.intro(intro_words));
        for (i, &theme) in themes.iter().enumerate() {
            blocks.extend(self.section(i, &THEMES[theme], section_words));
        }
        blocks.extend(self.conclusion(conclusion_words));
        let body = blocks.join("\n\n");

        let title = title_case(&self.render(self.pick(titles(self.length), 1), &self.topic));
        Draft {
            excerpt: excerpt(&body),
            title,
            body,
        }
    }

    fn intro(&self, target: usize) -> Vec<String> {
        let mut sentences = vec![self.render(self.pick(self.voice.hooks, 2), &self.topic)];
        sentences.push(match self.keywords.as_slice() {
            [] => format!(
                "We will look at {} from several angles: why it matters, how to begin, and how to keep improving.",
                self.topic
            ),
            keywords => format!(
                "We will look at {} from several angles, with particular attention to {}.",
                self.topic,
                list(keywords, "and")
            ),
        });
        let used = words(&sentences);
        sentences.extend(self.fill(INTRO, 3, target.saturating_sub(used), &self.topic, false));
        paragraphs(&sentences)
    }

    fn section(&self, i: usize, theme: &Theme, target: usize) -> Vec<String> {
        // The first section is about the topic itself; later ones take the keywords in turn,
        // so each keyword gets a section of its own when there are enough sections.
        let focus = match (i, self.keywords.as_slice()) {
            (0, _) | (_, []) => &self.topic,
            (_, keywords) => &keywords[(i - 1) % keywords.len()],
        };
        let salt = 10 + i as u64;
        let heading = format!(
            "## {}",
            self.render(self.pick(&theme.headings, salt), focus)
        );
        let steps: Vec<String> = theme
            .steps
            .iter()
            .enumerate()
            .map(|(n, step)| format!("{}. {}", n + 1, self.render(step, focus)))
            .collect();
        let steps =
            (!steps.is_empty()).then(|| format!("{}\n\n{}", theme.steps_lead, steps.join("\n")));
        // Asides in every other section: enough to carry the tone without becoming a tic.
        // Taken in turn, so no aside repeats within a draft.
        let aside = (i & 1 == 0).then(|| self.render(self.nth(self.voice.asides, i / 2), focus));

        let fixed = [Some(&heading), steps.as_ref(), aside.as_ref()];
        let used: usize = fixed
            .iter()
            .flatten()
            .map(|s| s.split_whitespace().count())
            .sum();
        let sentences = self.fill(
            theme.sentences,
            salt,
            target.saturating_sub(used),
            focus,
            true,
        );
        let mut paras = paragraphs(&sentences);
        // The aside ends the section's prose rather than standing as a paragraph of its own.
        if let (Some(last), Some(aside)) = (paras.last_mut(), aside) {
            last.push(' ');
            last.push_str(&aside);
        }

        let mut blocks = vec![heading];
        let mut paras = paras.into_iter();
        blocks.extend(paras.next());
        blocks.extend(steps);
        blocks.extend(paras);
        blocks
    }

    fn conclusion(&self, target: usize) -> Vec<String> {
        let mut tail = Vec::new();
        match self.keywords.as_slice() {
            [] => {}
            [only] => tail.push(format!("Keep {only} in view, and the rest will follow.")),
            keywords => tail.push(format!(
                "Whichever of {} matters most to you, the same principles apply.",
                list(keywords, "or")
            )),
        }
        tail.push(self.render(self.pick(self.voice.closings, 3), &self.topic));
        if !self.site.is_empty() {
            tail.push(self.render(self.voice.site, &self.topic));
        }
        let heading = format!("## {}", self.voice.wrap_up);
        let used = words(&tail) + heading.split_whitespace().count();
        let mut sentences = self.fill(
            CONCLUSION,
            4,
            target.saturating_sub(used),
            &self.topic,
            false,
        );
        sentences.extend(tail);
        let mut blocks = vec![heading];
        blocks.extend(paragraphs(&sentences));
        blocks
    }

    /// Takes sentences from `pool` to come as close to `target` words as whole sentences
    /// allow: the first sentence first, then the rest from a seed-chosen starting point, each
    /// at most once. A section passes `opens` so that its opening sentence is always there.
    fn fill(
        &self,
        pool: &[&str],
        salt: u64,
        target: usize,
        focus: &str,
        opens: bool,
    ) -> Vec<String> {
        let Some((first, rest)) = pool.split_first() else {
            return Vec::new();
        };
        let start = if rest.is_empty() {
            0
        } else {
            (mix(self.seed ^ salt.wrapping_mul(0x9e37_79b9)) % rest.len() as u64) as usize
        };
        let order = std::iter::once(first).chain(rest.iter().cycle().skip(start).take(rest.len()));
        let mut out = Vec::new();
        let mut count = 0;
        for template in order {
            let sentence = self.render(template, focus);
            let n = sentence.split_whitespace().count();
            // Stop when this sentence would overshoot by more than it would fall short.
            if count + n / 2 > target && !(opens && out.is_empty()) {
                break;
            }
            count += n;
            out.push(sentence);
        }
        out
    }

    fn pick(&self, items: &[&'static str], salt: u64) -> &'static str {
        let i = mix(self.seed ^ salt.wrapping_mul(0x9e37_79b9))
            .checked_rem(items.len() as u64)
            .unwrap_or(0) as usize;
        items.get(i).copied().unwrap_or("")
    }

    /// The `n`-th item from a seed-chosen start, wrapping around: distinct for distinct `n`
    /// up to the number of items.
    fn nth(&self, items: &[&'static str], n: usize) -> &'static str {
        let start = mix(self.seed).checked_rem(items.len() as u64).unwrap_or(0) as usize;
        items
            .get((start + n) % items.len().max(1))
            .copied()
            .unwrap_or("")
    }

    fn render(&self, template: &str, focus: &str) -> String {
        capitalize(
            &template
                .replace("{topic}", &self.topic)
                .replace("{focus}", focus)
                .replace("{site}", &self.site),
        )
    }
}

fn paragraphs(sentences: &[String]) -> Vec<String> {
    sentences.chunks(PARAGRAPH).map(|c| c.join(" ")).collect()
}

fn words(sentences: &[String]) -> usize {
    sentences.iter().map(|s| s.split_whitespace().count()).sum()
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[String], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Title case that leaves words with capitals alone ("AWS", "iPhone") and keeps short
/// function words lowercase except at the start.
fn title_case(s: &str) -> String {
    const SMALL: &[&str] = &[
        "a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "vs",
        "with",
    ];
    s.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if w.chars().any(char::is_uppercase) || (i > 0 && SMALL.contains(&w)) {
                w.to_owned()
            } else {
                capitalize(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, whose output may change between Rust
/// releases), so a request gives the same draft on every build.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// SplitMix64's finaliser, so that neighbouring salts give unrelated picks.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(length: Length) -> GenerationRequest {
        GenerationRequest {
            topic: "composting at home".to_owned(),
            keywords: vec![
                "kitchen scraps".to_owned(),
                "worm bins".to_owned(),
                "Soil Health".to_owned(),
            ],
            tone: Some("friendly".to_owned()),
            length,
            website_name: "Green Thumb".to_owned(),
        }
    }

    fn word_count(d: &Draft) -> usize {
        d.body.split_whitespace().count()
    }

    fn section_count(d: &Draft) -> usize {
        d.body.lines().filter(|l| l.starts_with("## ")).count()
    }

    #[tokio::test]
    async fn the_same_request_gives_the_same_draft() {
        let generator = OfflineGenerator::new();
        for length in [Length::Short, Length::Medium, Length::Long] {
            let a = generator.generate(&request(length)).await.unwrap();
            let b = generator.generate(&request(length)).await.unwrap();
            assert_eq!(a, b);
        }
        // A fresh generator too: nothing is cached or random.
        assert_eq!(
            OfflineGenerator::new().compose(&request(Length::Medium)),
            generator.compose(&request(Length::Medium))
        );
    }

    #[test]
    fn the_draft_is_about_the_topic_and_weaves_in_every_keyword() {
        for length in [Length::Short, Length::Medium, Length::Long] {
            let d = OfflineGenerator::new().compose(&request(length));
            assert!(d.title.contains("Composting at Home"), "{}", d.title);
            assert!(d.body.contains("composting at home"));
            for k in ["kitchen scraps", "worm bins", "Soil Health"] {
                assert!(d.body.contains(k), "{length:?} lacks {k}");
            }
            assert!(d.body.contains("Green Thumb"));
        }
        // With enough sections, each keyword heads one.
        let long = OfflineGenerator::new().compose(&request(Length::Long));
        for k in ["kitchen scraps", "worm bins", "Soil Health"] {
            assert!(
                long.body
                    .lines()
                    .any(|l| l.starts_with("## ") && l.contains(k)),
                "no section on {k}"
            );
        }
    }

    #[test]
    fn every_voice_and_keyword_count_stays_near_the_target_length() {
        let keyword_sets: [&[&str]; 3] = [&[], &["worms"], &["a b", "c d e", "f", "g", "h"]];
        for tone in [
            None,
            Some("formal"),
            Some("Playful!"),
            Some("persuasive"),
            Some("odd"),
        ] {
            for keywords in keyword_sets {
                for length in [Length::Short, Length::Medium, Length::Long] {
                    let d = OfflineGenerator::new().compose(&GenerationRequest {
                        tone: tone.map(Into::into),
                        keywords: keywords.iter().map(|k| k.to_string()).collect(),
                        ..request(length)
                    });
                    let (words, target) = (word_count(&d), length.target_words());
                    assert!(
                        words * 100 >= target * 85 && words * 100 <= target * 120,
                        "{tone:?} {keywords:?} {length:?}: {words} words"
                    );
                    for k in keywords {
                        assert!(d.body.contains(k), "{k} missing");
                    }
                }
            }
        }
    }

    #[test]
    fn length_scales_words_and_sections() {
        let generator = OfflineGenerator::new();
        let mut previous = (0, 0);
        for length in [Length::Short, Length::Medium, Length::Long] {
            let d = generator.compose(&request(length));
            let (words, sections) = (word_count(&d), section_count(&d));
            let target = length.target_words();
            assert!(
                words * 100 >= target * 85 && words * 100 <= target * 120,
                "{length:?}: {words} words, wanted about {target}"
            );
            assert!(words > previous.0 && sections > previous.1, "{length:?}");
            previous = (words, sections);
        }
        assert_eq!(
            section_count(&generator.compose(&request(Length::Short))),
            3
        );
        assert_eq!(section_count(&generator.compose(&request(Length::Long))), 8);
    }

    #[test]
    fn the_body_is_plain_structured_markdown() {
        let d = OfflineGenerator::new().compose(&request(Length::Medium));
        // The title is stored apart from the body, so the body has no first-level heading.
        assert!(!d.body.lines().any(|l| l.starts_with("# ")));
        assert!(
            !d.body.starts_with('#'),
            "the body opens with an introduction"
        );
        // Blocks are separated by exactly one blank line and headings stand alone.
        assert!(!d.body.contains("\n\n\n"));
        for block in d.body.split("\n\n") {
            assert!(!block.trim().is_empty());
            if block.starts_with("## ") {
                assert!(!block.contains('\n'), "{block:?}");
            }
        }
        // The practical section's routine is a numbered list.
        assert!(d.body.contains("\n1. Define what success with"));
        assert!(d.body.lines().last().unwrap().ends_with('!'));
        // The excerpt is the introduction's opening, as plain text.
        assert!(!d.excerpt.is_empty() && d.excerpt.chars().count() <= 201);
        assert!(d.body.starts_with(d.excerpt.trim_end_matches('…')));
    }

    #[test]
    fn tone_changes_the_voice_and_input_whitespace_is_tidied() {
        let generator = OfflineGenerator::new();
        let friendly = generator.compose(&request(Length::Short));
        let formal = generator.compose(&GenerationRequest {
            tone: Some("Formal".to_owned()),
            ..request(Length::Short)
        });
        let unknown = generator.compose(&GenerationRequest {
            tone: Some("sardonic".to_owned()),
            ..request(Length::Short)
        });
        assert!(friendly.body.contains("## Wrapping up"));
        assert!(formal.body.contains("## Conclusion"));
        assert!(unknown.body.contains("## Final thoughts"));

        let messy = generator.compose(&GenerationRequest {
            topic: "  composting\n at   home ".to_owned(),
            keywords: vec![
                " ".to_owned(),
                "worm\nbins".to_owned(),
                "WORM BINS".to_owned(),
            ],
            tone: None,
            length: Length::Short,
            website_name: String::new(),
        });
        assert!(messy.body.contains("composting at home"));
        assert!(messy.body.contains("worm bins"));
        assert!(
            !messy.body.contains("WORM BINS"),
            "keywords are de-duplicated"
        );
        assert!(!messy.body.contains("{site}") && !messy.body.contains(" on ."));
    }

    #[test]
    fn a_blank_request_still_gives_a_draft() {
        let d = OfflineGenerator::new().compose(&GenerationRequest {
            topic: String::new(),
            keywords: Vec::new(),
            tone: None,
            length: Length::Short,
            website_name: String::new(),
        });
        assert!(d.title.contains("Untitled Draft"), "{}", d.title);
        assert!(!d.body.is_empty() && !d.excerpt.is_empty());
    }

    #[test]
    fn title_case_keeps_acronyms_and_small_words() {
        assert_eq!(
            title_case("the case for AWS and iPhone apps"),
            "The Case for AWS and iPhone Apps"
        );
        assert_eq!(
            list(&["a".into(), "b".into(), "c".into()], "or"),
            "a, b or c"
        );
    }
}
