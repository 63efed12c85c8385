//! The README's commands are real: every `recur …` or `cargo run --release -- …` line in its
//! shell code blocks names subcommands and flags that `recur --help` has.

use clap::CommandFactory;

/// The command lines of the README's code blocks, as words, from the subcommand on.
fn readme_commands() -> Vec<Vec<String>> {
    let text = include_str!("../../README.md");
    let mut out = Vec::new();
    // Inside a shell block (```sh, ```bash); text blocks show output, not commands.
    let mut in_block: Option<bool> = None;
    for line in text.lines() {
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            in_block = match in_block {
                Some(_) => None,
                None => Some(matches!(lang.trim(), "sh" | "bash" | "console")),
            };
            continue;
        }
        if in_block != Some(true) {
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        let rest = line
            .strip_prefix("cargo run --release --")
            .or_else(|| line.strip_prefix("recur "));
        let Some(rest) = rest else { continue };
        let words: Vec<String> = rest
            .split_whitespace()
            .take_while(|w| !["#", "|", "&", "&&", ">", ";", "\\"].contains(w))
            .map(str::to_owned)
            .collect();
        out.push(words);
    }
    out
}

/// Checks one command line against the CLI's definition; the problem if any.
fn check(words: &[String]) -> Result<(), String> {
    let root = recur::cli::Cli::command();
    let globals: Vec<clap::Arg> = root.get_arguments().cloned().collect();
    let mut cmd = &root;
    let mut path = vec!["recur".to_owned()];
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if let Some(flag) = w.strip_prefix("--") {
            let (name, inline) = flag
                .split_once('=')
                .map_or((flag, false), |(n, _)| (n, true));
            let arg = cmd
                .get_arguments()
                .chain(globals.iter())
                .find(|a| a.get_long() == Some(name))
                .ok_or_else(|| format!("`{}` has no flag --{name}", path.join(" ")))?;
            let takes_value = arg.get_action().takes_values();
            i += if takes_value && !inline { 2 } else { 1 };
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(w) {
            cmd = sub;
            path.push(w.clone());
        } else if cmd.get_positionals().next().is_none() {
            return Err(format!("`{}` has no subcommand `{w}`", path.join(" ")));
        }
        i += 1;
    }
    if cmd.has_subcommands() {
        return Err(format!("`{}` needs a subcommand", path.join(" ")));
    }
    Ok(())
}

#[test]
fn every_readme_command_exists() {
    let commands = readme_commands();
    assert!(commands.len() >= 5, "{commands:?}");
    assert_eq!(commands[0], ["demo"], "the README opens with the demo");
    let bad: Vec<String> = commands
        .iter()
        .filter_map(|c| check(c).err().map(|e| format!("{}: {e}", c.join(" "))))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    // The checker itself catches a made-up command and flag.
    assert!(check(&["launch".into()]).is_err());
    assert!(check(&["serve".into(), "--port".into(), "1".into()]).is_err());
    assert!(check(&["bench".into()]).is_err());
}
