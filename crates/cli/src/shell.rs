//! `warden completions bash|zsh|fish` and `warden man --out DIR`: generated from the same clap
//! definitions as the parser, so they cannot drift from it.

use std::path::Path;

use anyhow::Context as _;
use clap::ValueEnum;

/// The shells completions are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell, mut command: clap::Command) -> String {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut command, "warden", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes one man page per command into `dir` (created if missing): `warden.1`,
/// `warden-task.1`, `warden-task-create.1`, ... Returns how many were written.
pub fn man_pages(command: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let mut command = command;
    command.build();
    let mut written = 0;
    write_pages(&command, "warden", dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let page = command.clone().name(name.to_owned());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut bytes)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The folder of the command pages, from the crate's own folder: `docs/cli`.
pub const DOCS_DIR: &str = "docs/cli";

/// One Markdown page per visible command, `warden.md`, `warden-task.md`,
/// `warden-task-create.md`, ..., each holding that command's `--help`, and `README.md` listing
/// them: (file name, text). What `warden docs --out DIR` writes and the test compares with
/// the committed docs/cli.
pub fn doc_pages(command: clap::Command) -> Vec<(String, String)> {
    let mut command = command;
    command.build();
    let mut pages = Vec::new();
    doc_page(&command, "warden", "warden", &mut pages);
    let mut index = String::from(
        "# The `warden` commands\n\n\
         One page per command, each its `--help` as `warden` prints it. Generated from the\n\
         same clap definitions as the parser: `warden docs --out docs/cli` rewrites them, and\n\
         a test fails when they are stale. `warden man --out DIR` writes them as man pages.\n\
         Exit status, the same for every command: the table in the [README](../../README.md).\n\n",
    );
    for (file, text) in &pages {
        let title = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ");
        index.push_str(&format!("- [{title}]({file})\n"));
    }
    pages.push(("README.md".to_owned(), index));
    pages
}

fn doc_page(command: &clap::Command, name: &str, title: &str, pages: &mut Vec<(String, String)>) {
    let mut c = command.clone().bin_name(title.to_owned());
    let help = c.render_long_help().to_string();
    let help: Vec<&str> = help.trim_end().lines().map(str::trim_end).collect();
    let help = help.join("\n");
    pages.push((
        format!("{name}.md"),
        format!("# `{title}`\n\n```text\n{help}\n```\n"),
    ));
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" || sub.is_hide_set() {
            continue;
        }
        let sub_name = sub.get_name();
        doc_page(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{title} {sub_name}"),
            pages,
        );
    }
}

/// Writes [`doc_pages`] into `dir` (created if missing); returns how many.
pub fn write_doc_pages(command: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let pages = doc_pages(command);
    for (file, text) in &pages {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(pages.len())
}
