//! The settings kura reads from the environment that no flag sets, each declared once with
//! its documentation: `--help` lists them, the README's table is checked against this list,
//! and the code reads each by its constant. (Every flag's own variable is declared with the
//! flag, in `cli.rs`.)

/// One environment setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub doc: &'static str,
}

macro_rules! settings {
    ($($id:ident = $name:literal: $doc:literal;)*) => {
        $(pub const $id: Setting = Setting { name: $name, doc: $doc };)*
        /// Every setting, in the order `--help` shows them.
        pub const ALL: &[Setting] = &[$($id),*];
    };
}

settings! {
    HTTP_TIMEOUT = "KURA_HTTP_TIMEOUT":
        "Seconds a store may stay silent, retries included (default 30): a request quiet for a third of it is tried again, and a silent store is given up on within it, on every kind of store.";
    HTTP_USERNAME = "KURA_HTTP_USERNAME":
        "User for an http(s):// store (Basic auth), instead of the one in the URL.";
    HTTP_PASSWORD = "KURA_HTTP_PASSWORD":
        "Password for an http(s):// store, with KURA_HTTP_USERNAME.";
    S3_ENDPOINT = "KURA_S3_ENDPOINT":
        "Endpoint of an S3-compatible server (MinIO, Garage, R2, Ceph), as ?endpoint= in the URL.";
    S3_PART_SIZE = "KURA_S3_PART_SIZE":
        "Part size of S3 multipart uploads, 5M to 5G (default 8M), as ?part_size=.";
    S3_CONCURRENCY = "KURA_S3_CONCURRENCY":
        "S3 parts in flight each way, 1 to 64 (default 8), as ?concurrency=.";
    OCI_USERNAME = "KURA_OCI_USERNAME":
        "User for an oci:// registry (default: what docker login wrote, else GITHUB_ACTOR with GITHUB_TOKEN on ghcr.io).";
    OCI_PASSWORD = "KURA_OCI_PASSWORD":
        "Password or token for an oci:// registry, with KURA_OCI_USERNAME.";
    OCI_PACKAGES_API = "KURA_OCI_PACKAGES_API":
        "The Packages API that deletes a registry's package versions (ghcr.io: GITHUB_API_URL, else https://api.github.com; GitHub Enterprise Server: name it).";
    PROGRESS_SECONDS = "KURA_PROGRESS_SECONDS":
        "Seconds between progress lines of long transfers (default 10; 0: none).";
    BRANCH = "KURA_BRANCH":
        "The branch for {{ .Branch }} and scopes, over what the CI or git says.";
    REVISION = "KURA_REVISION":
        "The commit for {{ .Revision }}, over what the CI or git says.";
    BUILD_NUM = "KURA_BUILD_NUM":
        "The build number for {{ .BuildNum }}.";
    WORKFLOW = "KURA_WORKFLOW":
        "The workflow run id for {{ .Workflow }} and workspaces.";
    JOB = "KURA_JOB":
        "The job name for {{ .Job }} and workspace layers.";
    DEFAULT_BRANCH = "KURA_DEFAULT_BRANCH":
        "The default branch, whose scope every branch also reads (GitHub: the repository's, from the event).";
}

/// The settings as `--help` shows them, after the flags.
pub fn help() -> String {
    let width = ALL.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = String::from("Environment settings (no flag):\n");
    for s in ALL {
        out.push_str(&format!("  {:width$}  {}\n", s.name, s.doc));
    }
    out
}
