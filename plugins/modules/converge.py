#!/usr/bin/python
"""Documentation of the ecrkit.ecr.converge action (plugins/action/converge.py), which does the work
on the controller; ansible-doc reads a module's documentation from here."""

from __future__ import annotations

DOCUMENTATION = r"""
module: converge
short_description: One role of this collection in one task; probe, decide, write what differs
version_added: 0.1.0
author: ecrkit maintainers (@ecrkit)
description:
  - Probes the host once (M(ecrkit.ecr.probe)), decides on the controller with the Python package
    ecrkit what the role changes, and writes every directory and file that differs in one
    M(ecrkit.ecr.files) call; a file of the controller's that the role installs (the helper
    binary of the C(controller_file) method, or an C(s3://) object the controller downloads
    into its cache first) is copied with the writes.
  - Compare before write. Each file the probe read is replaced only while it still holds what
    the plan was made from (O(ecrkit.ecr.files#module:files[].expected_sha256)). When another writer changed one
    meanwhile (GitLab Runner rewrites its own C(config.toml), e.g. to refresh a token), the
    action probes and plans again, up to 3 times, and then fails naming the file; the other
    writer's content is never reverted.
  - Every input is validated before anything is written. An error names the role's variable,
    the bad value and what is accepted, never a file's content.
  - Files that hold stored credentials are written without their own diff and without being
    logged on the host; their diff shows the secrets replaced by C(<redacted>).
  - The roles of this collection call it; their variables, without the role's prefix, are O(options).
  - What a service runs with is judged from the running service, not only from this run's writes
    (gitlab_runner_ecr, marathon_agent_ecr); a reload or restart still due, from a run killed before its handler ran,
    is reported as a change (RV(pending)), so that the role's handler runs.
  - A role may run commands on the host after its writes (RV(run)), by the same M(ecrkit.ecr.files) call, whether
    or not it writes anything. Each is a change; in check mode none runs and the task reports the change it would
    make. A command that fails fails the task, naming the command and the last line of its standard error.
    P(ecrkit.ecr.gitlab_runner_ecr#role) installs a docker-autoscaler runner's fleeting plugin so (RV(fleeting)).
options:
  role:
    description:
      - The role whose converge this is.
      - V(ecr_credential_helper_version) only records, after the host-side install of
        P(ecrkit.ecr.ecr_credential_helper#role) (release, package, url), the version the binary at
        C(options.path) reports, as the fact C(ecr_credential_helper_installed_version).
    type: str
    required: true
    choices:
      - ecr_credential_helper
      - ecr_credential_helper_version
      - docker_auth_config
      - aws_sso_profile
      - registries_conf
      - gitlab_runner_ecr
      - marathon_agent_ecr
  options:
    description:
      - The role's variables without the role's prefix (see each role's argument spec).
      - Omitted, each option is the role's variable of that name (C(<role>_<option>)), templated by the action; a
        role's task that passes them through unchanged omits them, which saves each host a Jinja compile per option.
    type: dict
    required: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The probe runs; nothing is copied or written; what would change is reported.
  diff_mode:
    support: full
    details: One diff per file whose content changes, redacted where it holds stored credentials.
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Merge the helper into root's config.json for one registry
  ecrkit.ecr.converge:
    role: docker_auth_config
    options:
      users: [root]
      registries: [123456789012.dkr.ecr.eu-west-1.amazonaws.com]
      public: false
      creds_store: false
      state: present
      replace_invalid: false
"""

RETURN = r"""
changed_paths:
  description: What M(ecrkit.ecr.files) returns as RV(ecrkit.ecr.files#module:changed_paths) for the role's writes.
  returned: always
  type: list
  elements: str
backups:
  description: What M(ecrkit.ecr.files) returns as RV(ecrkit.ecr.files#module:backups).
  returned: always
  type: dict
ansible_facts:
  description: >-
    For ecr_credential_helper, C(ecr_credential_helper_path) and C(ecr_credential_helper_installed_version)
    (V('') while no helper is installed).
  returned: always
  type: dict
install:
  description: >-
    For ecr_credential_helper, what the host must download or install itself (release, package, or
    a url over HTTP(S)), or V(null) when nothing is to be installed there.
  returned: for ecr_credential_helper
  type: dict
rule:
  description: >-
    For docker_auth_config, gitlab_runner_ecr and marathon_agent_ecr, the credential rule (its registries, and whether
    credsStore is written).
  returned: for docker_auth_config, gitlab_runner_ecr and marathon_agent_ecr
  type: dict
form:
  description: For aws_sso_profile, the profile's form (sso-session or legacy).
  returned: for aws_sso_profile
  type: str
run:
  description: The commands the role ran after its writes (in check mode, would have run).
  returned: always
  type: list
  elements: str
  sample: [gitlab-runner fleeting -c /etc/gitlab-runner/config.toml install]
fleeting:
  description: >-
    For gitlab_runner_ecr, the fleeting plugin's install: C(install), the command run (V('') when none), and
    C(reason), what the plugin is or why none is installed (no plugin named, a runner in a container, GitLab
    Runner before 16.11, which is also a warning, or a marker beside config.toml that says it was installed).
  returned: for gitlab_runner_ecr
  type: dict
  sample: {"install": "", "reason": "GitLab Runner 16.10 has no `fleeting install` (since 16.11): ..."}
pending:
  description: >-
    What the role's handlers must still do on the host, and why (a service that runs with another
    environment than its unit gives a new start); the task then reports a change.
  returned: always
  type: list
  elements: str
restart:
  description: >-
    For gitlab_runner_ecr and marathon_agent_ecr, whether the running service must restart to get
    its drop-in or environment file: this run changed it, or its process runs with other values
    than a new start would get (a killed run's restart). A stopped service is not started.
  returned: for gitlab_runner_ecr and marathon_agent_ecr
  type: bool
daemon_reload:
  description: >-
    For gitlab_runner_ecr and marathon_agent_ecr, whether systemd must reload its unit files: this
    run wrote the drop-in, or systemd says they changed since it loaded them (NeedDaemonReload).
  returned: for gitlab_runner_ecr and marathon_agent_ecr
  type: bool
"""
