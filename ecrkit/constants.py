"""The one place for the helper's names, the release ecrkit installs, and the role defaults
that ecrkit itself needs (`ecrkit validate` reads them when an inventory leaves them unset).

Every Python module imports these; the roles' defaults get them through the `ecrkit.ecr.default`
filter, and their argument_specs state the same values for ansible-doc (tests compare them).
The probe (plugins/modules/probe.py) runs alone on hosts and keeps its own copy of the binary's
name (a test compares it). Standard library only: nothing here reads the checkout.
"""

from __future__ import annotations

from typing import Final

HELPER_NAME: Final = "ecr-login"  # what credsStore and credHelpers name
HELPER_BINARY: Final = "docker-credential-ecr-login"  # the executable Docker runs for HELPER_NAME
HELPER_VERSION: Final = "0.12.0"  # the release ecrkit installs unless told otherwise
RELEASE_BASE_URL: Final = "https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com"
INSTALL_DIR: Final = "/usr/local/bin"  # where a release goes by default (on systemd's and login PATHs)
PACKAGE_DIR: Final = "/usr/bin"  # where apt, dnf and yum put it, and the Mesos agent finds it
CACHE_DIR: Final = "/var/lib/ecr-login"  # AWS_ECR_CACHE_DIR for services
# The validator's probe of a job's reach to the instance role runs in this image (it needs sh and
# curl, and is never pulled by the validator), on this network (Docker's default, as jobs use it).
JOB_PROBE_IMAGE: Final = "docker.io/curlimages/curl:8.11.1"
JOB_PROBE_NETWORK: Final = "bridge"
LOGROTATE_PATH: Final = "/etc/logrotate.d/ecr-login"
# IMDSv2's response hop limit on job hosts (docker+machine's MachineOptions, the autoscaler's launch
# template): 1 keeps job containers, one hop further, from the instance role and its credentials
# (seed 001; `ecrkit validate` warns at 2 or more). Jobs that run the helper themselves need 2: an opt-in.
HOP_LIMIT: Final = 1

# Role variables whose defaults ecrkit needs outside Ansible (`ecrkit validate`, the CLI). The
# roles' defaults/main.yml read them with `'NAME' | ecrkit.ecr.default`.
ROLE_DEFAULTS: Final[dict[str, object]] = {
    "ecr_credential_helper_version": HELPER_VERSION,
    "ecr_credential_helper_release_base_url": RELEASE_BASE_URL,
    "ecr_credential_helper_install_dir": INSTALL_DIR,
    "ecr_credential_helper_cache_dir": CACHE_DIR,
    "docker_auth_config_users": ["root"],
    "docker_auth_config_registries": [],
    "docker_auth_config_public": False,
    "docker_auth_config_creds_store": False,
    "ecrkit_task_user": "nobody",  # the validate entry point's: who a Mesos task runs as
    "ecrkit_job_probe_image": JOB_PROBE_IMAGE,  # the validate entry point's, as the next
    "ecrkit_job_probe_network": JOB_PROBE_NETWORK,
    "gitlab_runner_ecr_service": "gitlab-runner",
    "gitlab_runner_ecr_hop_limit": HOP_LIMIT,
    "autoscaling_group_hop_limit": HOP_LIMIT,
    "marathon_agent_ecr_service": "dcos-mesos-slave",
    "marathon_agent_ecr_docker_tar_path": "/etc/docker.tar.gz",
}

# `ecrkit mirror --jobs` and ecr_mirror_jobs: copies at once, each with a connection to the source and to ECR.
MIRROR_JOBS = (1, 64)


def role_default(name: str) -> object:
    """A role variable's default (a fresh copy of a list), or KeyError naming the variable."""
    value = ROLE_DEFAULTS[name]
    return list(value) if isinstance(value, list) else value
