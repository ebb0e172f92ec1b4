//! A throw-away PostgreSQL cluster for baselines: Debian's server binaries
//! (`/usr/lib/postgresql/*/bin`, installed with apt-get when missing and running as root), a
//! private data directory, a Unix socket and a free port, stopped when dropped. `initdb` refuses
//! to run as root, so as root every PostgreSQL program runs as the `postgres` user (`runuser`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;

/// A running cluster; stopped (immediate mode) on drop.
pub(crate) struct PgCluster {
    bin: PathBuf,
    data: String,
    port: String,
    as_root: bool,
}

impl PgCluster {
    /// Creates a cluster in `dir` (which must not exist yet) and starts it with `settings`
    /// (`name=value` server settings, passed as `-c`).
    pub(crate) fn start(dir: &Path, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = postgres_bin().context("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")?;
        std::fs::create_dir_all(dir)?;
        let as_root = is_root();
        if as_root {
            Command::new("chown").args(["postgres:postgres"]).arg(dir).status()?;
        }
        let cluster = Self {
            bin,
            data: dir.to_string_lossy().into_owned(),
            port: thinglake_test_support::free_port().to_string(),
            as_root,
        };
        cluster.run("initdb", &["-D", &cluster.data, "-A", "trust", "-U", "postgres", "-E", "UTF8"])?;
        let mut opts = format!("-p {} -k {} -c listen_addresses=''", cluster.port, cluster.data);
        for (name, value) in settings {
            opts.push_str(&format!(" -c {name}={value}"));
        }
        let log = format!("{}/log", cluster.data);
        cluster.run("pg_ctl", &["-D", &cluster.data, "-o", &opts, "-w", "-l", &log, "start"])?;
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = self.command(program).args(args).output().with_context(|| format!("running {program}"))?;
        if !output.status.success() {
            anyhow::bail!("{program} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn psql_args(&self) -> Vec<&str> {
        vec!["-h", &self.data, "-p", &self.port, "-U", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    }

    /// Runs SQL (several statements, psql meta-commands allowed) and returns psql's output,
    /// unaligned, tuples only, fields separated by `|`.
    pub(crate) fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let mut args = self.psql_args();
        args.extend(["-A", "-t"]);
        self.feed("psql", &args, sql.as_bytes())
    }

    /// `COPY table (columns) FROM STDIN` with the rows `write` produces (text format).
    pub(crate) fn copy_in(
        &self,
        table_and_columns: &str,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut args = self.psql_args();
        let copy = format!("COPY {table_and_columns} FROM STDIN");
        args.extend(["-c", &copy]);
        let mut child = self.command("psql").args(&args).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        {
            let stdin = child.stdin.take().expect("stdin is piped");
            let mut buffered = std::io::BufWriter::with_capacity(1 << 20, stdin);
            write(&mut buffered).context("writing COPY rows to psql")?;
            buffered.flush()?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            anyhow::bail!("COPY into {table_and_columns} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    fn feed(&self, program: &str, args: &[&str], input: &[u8]) -> anyhow::Result<String> {
        let mut child = self
            .command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {program}"))?;
        // Written from another thread: psql's output may fill its pipe before it has read all input.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output()?;
        writer.join().map_err(|_| anyhow::anyhow!("the thread writing to {program} panicked"))??;
        if !output.status.success() {
            anyhow::bail!("{program} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `sql` `warmup + runs` times in one psql session with `\timing` and returns the
    /// client-side times of the last `runs` executions in milliseconds (result rows discarded).
    pub(crate) fn time(&self, sql: &str, warmup: usize, runs: usize) -> anyhow::Result<Vec<f64>> {
        let statement = format!("{};\n", sql.trim_end().trim_end_matches(';'));
        let times = self.timings(&statement.repeat(warmup + runs))?;
        anyhow::ensure!(times.len() == warmup + runs, "expected {} timings from psql, got {}", warmup + runs, times.len());
        Ok(times[warmup..].to_vec())
    }

    /// Runs a script of statements in one psql session with `\timing`; the client-side time of
    /// each statement in milliseconds, in order (result rows discarded).
    pub(crate) fn timings(&self, script: &str) -> anyhow::Result<Vec<f64>> {
        let out = self.psql(&format!("\\timing on\n\\o /dev/null\n{script}"))?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("Time: "))
            .filter_map(|t| t.split_whitespace().next()?.parse().ok())
            .collect())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data, "-m", "immediate", "stop"]);
    }
}

/// The newest installed PostgreSQL server's binary directory; as root, installs Debian's
/// `postgresql` package first when none is installed.
pub(crate) fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(bin) = postgres_bin() {
        return Ok(bin);
    }
    if !is_root() {
        anyhow::bail!("PostgreSQL is not installed: run `sudo apt-get install postgresql` (or run the suite as root)");
    }
    eprintln!("installing Debian's postgresql package with apt-get");
    let apt = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
        anyhow::ensure!(status.success(), "apt-get {} failed", args.join(" "));
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "postgresql"])?;
    postgres_bin().context("postgresql installed but no server binaries under /usr/lib/postgresql")
}

fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
