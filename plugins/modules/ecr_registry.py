#!/usr/bin/python
"""Ansible module: make an ECR registry match its declaration: repositories, pull-through cache rules,
creation templates, replication, registry scanning and the registry policy replication needs.

Runs on the controller with the project's Python (ansible_python_interpreter set to
ansible_playbook_python), where boto3 and the ecrkit package are; ecrkit.ecr_account holds
the logic. The plan is ecrkit.ecr_account.plan's output.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: ecrkit_ecr_registry
short_description: Repositories and registry-level ECR settings, as declared
description:
  - Creates and updates repositories (encryption at creation only, tag mutability with exclusions,
    scan on push, lifecycle and repository policies); creates, updates (or replaces, when the
    upstream changes) and, with O(purge), deletes pull-through cache rules and repository creation
    templates; puts the replication and registry scanning configurations and ecrkit's statement of
    the registry policy.
  - Secret names in the rules are resolved to ARNs; check mode and diff mode are supported.
  - An encryption that differs from the declared one is reported in C(drift) and as a warning, never changed.
options:
  plan: {type: dict, required: true, description: "ecrkit.ecr_account.plan's output (the filter ecrkit_ecr_account)."}
  purge: {type: bool, default: true, description: Delete what is not declared (see the role's ecr_account_purge).}
  region: {type: str, required: true, description: The registry's region.}
  profile: {type: str, description: An AWS profile name; the usual environment otherwise.}
  endpoint_url: {type: str, description: "One endpoint for the ECR and Secrets Manager APIs (a stand-in)."}
"""

import json  # noqa: E402 - Ansible modules put DOCUMENTATION first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "plan": {"type": "dict", "required": True},
            "purge": {"type": "bool", "default": True},
            "region": {"type": "str", "required": True},
            "profile": {"type": "str"},
            "endpoint_url": {"type": "str"},
        },
        supports_check_mode=True,
    )
    try:
        import boto3  # noqa: PLC0415 - reported as a module failure, not a traceback
        import botocore.exceptions  # noqa: PLC0415

        from ecrkit import ecr_account  # noqa: PLC0415
    except ImportError as exc:
        module.fail_json(
            msg=f"needs boto3 and ecrkit in ansible_python_interpreter ({exc}); use ansible_playbook_python"
        )
    params = module.params
    session = boto3.Session(profile_name=params["profile"], region_name=params["region"])
    ecr, secrets = (session.client(name, endpoint_url=params["endpoint_url"]) for name in ("ecr", "secretsmanager"))
    try:
        changes, drift = ecr_account.sync(ecr, secrets, params["plan"], purge=params["purge"], check=module.check_mode)
    except botocore.exceptions.BotoCoreError as exc:
        module.fail_json(msg=f"ECR: {exc}")
    except botocore.exceptions.ClientError as exc:
        module.fail_json(msg=f"ECR: {exc}", error=exc.response.get("Error", {}))

    def text(side: str) -> str:
        return "".join(f"{change}: {json.dumps(getattr(change, side), sort_keys=True)}\n" for change in changes)

    for message in drift:
        module.warn(message)
    module.exit_json(
        changed=bool(changes),
        changes=[str(change) for change in changes],
        drift=drift,
        diff={"before": text("before"), "after": text("after")},
    )


if __name__ == "__main__":
    main()
