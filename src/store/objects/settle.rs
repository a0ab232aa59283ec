//! Which of several concurrent saves of one key owns it, in stores without create-if-absent
//! (S3-compatible servers that ignore `If-None-Match`, WebDAV servers), decided from the names
//! listed in the key's directory, by writers and readers alike. The rule is described in the
//! module comment of `store::objects`.

pub(crate) fn marker_of(meta_object: &str) -> String {
    format!("{}.won", meta_object.trim_end_matches(".json"))
}

/// The entry of one key directory, given the names listed in it: the earliest metadata object
/// with a `.won` marker, else the earliest metadata object.
pub(crate) fn owner(names: &[String]) -> Option<String> {
    let metas = names.iter().filter(|n| n.ends_with(".json"));
    let marked = metas
        .clone()
        .filter(|m| names.contains(&marker_of(m)))
        .min();
    marked.or_else(|| metas.min()).cloned()
}

/// What a writer knows after listing its key directory (see the module comment).
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Won,
    Lost,
    /// Other writers, none marked yet: wait for a lone winner's marker, then decide by order.
    Unsure,
}

pub(crate) fn verdict(names: &[String], mine: &str) -> Verdict {
    let others = names
        .iter()
        .filter(|n| n.ends_with(".json") && n.as_str() != mine)
        .count();
    if others == 0 {
        Verdict::Won
    } else if names.iter().any(|n| n.ends_with(".won")) {
        if owner(names).as_deref() == Some(mine) {
            Verdict::Won
        } else {
            Verdict::Lost
        }
    } else {
        Verdict::Unsure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| format!("d/{n}")).collect()
    }

    #[test]
    fn a_lone_writer_wins_and_a_marked_entry_beats_an_earlier_unmarked_one() {
        assert_eq!(
            verdict(&names(&["2.json", "2.tzst"]), "d/2.json"),
            Verdict::Won
        );
        // The lone winner (2) marked its entry before writer 1, with an earlier name, listed.
        let seen = names(&["1.json", "1.tzst", "2.json", "2.tzst", "2.won"]);
        assert_eq!(verdict(&seen, "d/1.json"), Verdict::Lost);
        assert_eq!(owner(&seen).as_deref(), Some("d/2.json"));
        // Two writers that see each other, nobody marked: wait, then the earliest.
        let both = names(&["1.json", "2.json"]);
        assert_eq!(verdict(&both, "d/2.json"), Verdict::Unsure);
        assert_eq!(owner(&both).as_deref(), Some("d/1.json"));
        assert_eq!(owner(&names(&["1.tzst"])), None);
    }
}
