//! The MCP server: one tool, `shell`, plus Codex's sandbox-state extension.
//!
//! Each `shell` call is an independent supervisor session. A call ends when its session
//! does, when the client cancels it, or when the client disconnects; in the last two cases
//! the session is dropped, which kills its whole process tree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomNotification,
    CustomRequest, CustomResult, ErrorCode, ExperimentalCapabilities, Implementation, JsonObject,
    ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use supervisor::{ResourceLimits, SandboxPolicy, SessionSpec, SessionStdio};
use tokio_util::sync::CancellationToken;

use crate::budget;
use crate::elicitation::{ElicitationApprover, Remembered};
use crate::runner::{RunError, Sessions};
use crate::sandbox_state::{self, SandboxState};
use crate::shell::{self, SandboxSource, ShellParams, ShellResult};

/// The tool's one name.
pub const TOOL_NAME: &str = "shell";

/// Standard MCP requests this server serves; one arriving as a custom request had params
/// that did not decode.
pub(crate) const STANDARD_METHODS: &[&str] = &["initialize", "ping", "tools/list", "tools/call"];

/// What the server does when a call does not say otherwise.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Sandbox until the client sends a sandbox state.
    pub sandbox: SandboxPolicy,
    /// `timeout_ms` when the call has none.
    pub default_timeout: Duration,
    /// Cap for each of stdout, stderr and the interleaved output, in bytes the command
    /// wrote (what the server keeps in memory).
    pub max_output_bytes: usize,
    /// Cap on a whole `shell` response, serialized (see [`crate::budget`]).
    pub max_response_bytes: usize,
    /// Resource limits of every call's processes.
    pub limits: ResourceLimits,
    /// pids and memory limits of every call's cgroup.
    pub cgroup_limits: supervisor::CgroupLimits,
    /// The whole environment of every call (built by the caller from its own, credentials
    /// left out); nothing else of the server's environment reaches a call.
    pub env: Vec<(String, String)>,
    /// How long an approval request waits for the human before it is denied.
    pub prompt_timeout: Duration,
    /// The rules file an "approve always" appends to; `None`: approvals last for the
    /// connection only.
    pub amend_rules: Option<std::path::PathBuf>,
    /// Login calls start from one snapshot of the start-up files (see [`crate::login`])
    /// rather than running them each time. Off by default here (embedders, test doubles);
    /// `execgate mcp` turns it on unless `--no-login-snapshot`.
    pub login_snapshot: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            sandbox: SandboxPolicy::default(),
            default_timeout: Duration::from_secs(10),
            max_output_bytes: 1 << 20,
            max_response_bytes: budget::DEFAULT_MAX_RESPONSE_BYTES,
            limits: ResourceLimits::default(),
            cgroup_limits: supervisor::CgroupLimits::default(),
            env: Vec::new(),
            prompt_timeout: crate::elicitation::DEFAULT_PROMPT_TIMEOUT,
            amend_rules: None,
            login_snapshot: false,
        }
    }
}

struct Inner {
    sessions: Arc<dyn Sessions>,
    settings: ServerSettings,
    /// The last `codex/sandbox-state/update`, if any.
    sandbox_state: Mutex<Option<SandboxState>>,
    remembered: Arc<Remembered>,
    /// Cancelled when the client disconnects: every running call kills its session.
    disconnected: CancellationToken,
    /// What the login start-up files set, taken by the first login call.
    login: crate::login::LoginSnapshot,
}

/// The `shell` tool server.
#[derive(Clone)]
pub struct ShellServer {
    tool_router: ToolRouter<ShellServer>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ShellServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellServer")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

#[tool_router]
impl ShellServer {
    /// `disconnected` is cancelled by the transport when the client goes away.
    pub fn new(
        sessions: Arc<dyn Sessions>,
        settings: ServerSettings,
        disconnected: CancellationToken,
    ) -> Self {
        ShellServer {
            tool_router: Self::tool_router(),
            inner: Arc::new(Inner {
                sessions,
                settings,
                sandbox_state: Mutex::new(None),
                remembered: Arc::default(),
                disconnected,
                login: crate::login::LoginSnapshot::default(),
            }),
        }
    }

    #[tool(
        name = "shell",
        description = shell::DESCRIPTION,
        output_schema = rmcp::handler::server::tool::schema_for_output::<ShellResult>()
    )]
    async fn shell(
        &self,
        context: RequestContext<RoleServer>,
        Parameters(params): Parameters<ShellParams>,
    ) -> Result<CallToolResult, McpError> {
        let call = params.check(self.inner.settings.default_timeout)?;
        let (mut sandbox, source, mut warnings) = self.sandbox_for(&context);
        // The workdir comes from the agent: where the command runs, never a grant. The
        // writable roots are the person's (the server's flags) or the client's state.
        sandbox.workdir_writable = false;
        // Unix sockets outside are the person's to open (the server's flags), whatever
        // the client's state says.
        sandbox
            .allow_unix_sockets
            .clone_from(&self.inner.settings.sandbox.allow_unix_sockets);
        let approver =
            ElicitationApprover::new(context.peer.clone(), self.inner.remembered.clone())
                .with_prompt_timeout(self.inner.settings.prompt_timeout)
                .with_amend_rules(self.inner.settings.amend_rules.clone());
        let answered = approver.answered();
        let spec = SessionSpec {
            argv: call.argv,
            workdir: call.workdir,
            env: self.inner.settings.env.clone(),
            inherit_env: false,
            sandbox: sandbox.clone(),
            limits: self.inner.settings.limits,
            cgroup_limits: self.inner.settings.cgroup_limits,
            timeout: Some(call.timeout),
            stdio: SessionStdio::Piped,
            approver: Arc::new(approver),
        };
        let mut spec = spec;
        if self.inner.settings.login_snapshot && spec.argv.get(1).is_some_and(|f| f == "-lc") {
            let (taken, first) = self
                .inner
                .login
                .get(self.inner.sessions.as_ref(), &spec)
                .await;
            warnings.extend(crate::login::warnings(&taken, first));
            if let Ok(taken) = &taken {
                crate::login::apply(&mut spec, taken);
            }
        }
        let run = self
            .inner
            .sessions
            .run(spec, self.inner.settings.max_output_bytes);
        // Dropping `run` drops the session, which kills its tree.
        let finished = tokio::select! {
            finished = run => finished,
            _ = context.ct.cancelled() => {
                return Err(McpError::internal_error("the call was cancelled; its processes were killed", None));
            }
            _ = self.inner.disconnected.cancelled() => {
                return Err(McpError::internal_error("the client disconnected; the call's processes were killed", None));
            }
        };
        match finished {
            Ok(finished) => {
                let mut result = ShellResult::new(
                    &finished.outcome,
                    finished.captured,
                    source,
                    warnings,
                    &answered,
                );
                budget::fit(&mut result, self.inner.settings.max_response_bytes);
                budget::call_result(&result).map_err(|e| {
                    McpError::internal_error(format!("cannot serialize the result: {e}"), None)
                })
            }
            // The tool itself failed (not the command): the agent reads why.
            Err(error) => Ok(tool_failure(&error)),
        }
    }
}

fn tool_failure(error: &RunError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "execgate could not run the command: {error}"
    ))])
}

impl ShellServer {
    /// The call's `_meta` sandbox state, else the last update, else the command line,
    /// with what of the client's state was not understood or not honoured.
    fn sandbox_for(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> (SandboxPolicy, SandboxSource, Vec<String>) {
        let (state, source) = match context.meta.get(sandbox_state::META_CAPABILITY) {
            Some(value) => (
                Some(SandboxState::from_json(value)),
                SandboxSource::ToolCallMeta,
            ),
            None => (self.lock_state().clone(), SandboxSource::SandboxStateUpdate),
        };
        let settings = &self.inner.settings.sandbox;
        let Some(state) = state else {
            return (settings.clone(), SandboxSource::CommandLine, Vec::new());
        };
        for warning in &state.warnings {
            tracing::warn!("sandbox state: {warning}");
        }
        match state.policy {
            Some(mut policy) => {
                // Demanded on the command line: the client's state cannot waive it.
                policy.require_full |= settings.require_full;
                (policy, source, state.warnings)
            }
            None => (settings.clone(), SandboxSource::CommandLine, state.warnings),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, Option<SandboxState>> {
        // The state is replaced whole, so a poisoned lock still holds a valid value.
        self.inner
            .sandbox_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn capabilities() -> ServerCapabilities {
        let mut version = JsonObject::new();
        version.insert(
            "version".to_owned(),
            Value::String(sandbox_state::CAPABILITY_VERSION.to_owned()),
        );
        let mut experimental = ExperimentalCapabilities::new();
        experimental.insert(sandbox_state::CAPABILITY.to_owned(), version.clone());
        experimental.insert(sandbox_state::META_CAPABILITY.to_owned(), version);
        ServerCapabilities::builder()
            .enable_tools()
            .enable_experimental_with(experimental)
            .build()
    }
}

#[tool_handler]
impl ServerHandler for ShellServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(Self::capabilities())
            .with_server_info(Implementation::new("execgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "execgate runs shell commands for you. Every program a command starts is checked \
                 against an exec policy: allowed ones run in a sandbox, forbidden ones fail with a \
                 reason, and some need the user's approval, which the user gives through your \
                 client. The `shell` result lists denied and unsandboxed programs with reasons.",
            )
    }

    /// Up to 2025-11-25: later revisions forbid the server-to-client requests that
    /// elicitation needs in the middle of a running command.
    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != TOOL_NAME {
            return Err(McpError::invalid_params(
                budget::clip(&format!(
                    "unknown tool `{}`: this server has one tool, `{TOOL_NAME}`",
                    request.name
                )),
                None,
            ));
        }
        // rmcp turns arguments that do not deserialize into an `isError` result; execgate
        // answers every malformed call the same way, with `invalid_params`, so a client can
        // tell a bad request from a command that ran (see the crate docs).
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        if let Err(e) = serde_json::from_value::<ShellParams>(arguments) {
            return Err(McpError::invalid_params(
                budget::clip(&format!("invalid `{TOOL_NAME}` arguments: {e}")),
                None,
            ));
        }
        let tcc = ToolCallContext::new(self, request, context);
        self.tool_router.call(tcc).await
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        if STANDARD_METHODS.contains(&request.method.as_str()) {
            // rmcp hands a standard request whose params did not decode to this fallback.
            return Err(McpError::invalid_params(
                budget::clip(&crate::transport::describe_bad_params(
                    &request.method,
                    request.params.as_ref(),
                    "malformed params",
                )),
                None,
            ));
        }
        if request.method != sandbox_state::UPDATE_METHOD {
            return Err(McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                budget::clip(&format!("unknown method `{}`", request.method)),
                None,
            ));
        }
        let params = request.params.unwrap_or(Value::Null);
        // Never refused: what cannot be used is said in every later call's result.
        let state = SandboxState::from_json(&params);
        tracing::info!(sandbox = ?state.policy, warnings = ?state.warnings, "sandbox state updated");
        *self.lock_state() = Some(state);
        Ok(CustomResult::new(json!({})))
    }

    /// Some Codex builds send the update as a notification: apply it the same way.
    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleServer>,
    ) {
        if notification.method != sandbox_state::UPDATE_METHOD {
            tracing::debug!(method = %notification.method, "ignoring an unknown notification");
            return;
        }
        let state = SandboxState::from_json(&notification.params.unwrap_or(Value::Null));
        tracing::info!(sandbox = ?state.policy, warnings = ?state.warnings, "sandbox state updated (notification)");
        *self.lock_state() = Some(state);
    }
}
