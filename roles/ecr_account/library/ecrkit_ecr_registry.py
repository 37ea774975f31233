#!/usr/bin/python
"""Ansible module: make an ECR registry's pull-through cache rules and creation templates match.

Runs on the controller with the project's Python (ansible_python_interpreter set to
ansible_playbook_python), where boto3 and the ecrkit package are; ecrkit.ecr_account holds
the logic. The rules and templates are ecrkit.ecr_account.plan's output.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: ecrkit_ecr_registry
short_description: Pull-through cache rules and repository creation templates, as declared
description:
  - Creates, updates (or replaces, when the upstream changes) and, with O(purge), deletes
    pull-through cache rules and repository creation templates so the registry matches.
  - Secret names in the rules are resolved to ARNs; check mode and diff mode are supported.
  - Returns the names of the registry's repositories in C(repositories).
options:
  pull_through_rules: {type: list, elements: dict, default: [], description: Rules from the plan.}
  creation_templates: {type: list, elements: dict, default: [], description: Templates from the plan.}
  purge: {type: bool, default: true, description: Delete rules and templates that are not declared.}
  region: {type: str, required: true, description: The registry's region.}
  profile: {type: str, description: An AWS profile name; the usual environment otherwise.}
  endpoint_url: {type: str, description: "One endpoint for the ECR and Secrets Manager APIs (a stand-in)."}
"""

import json  # noqa: E402 - Ansible modules put DOCUMENTATION first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pull_through_rules": {"type": "list", "elements": "dict", "default": []},
            "creation_templates": {"type": "list", "elements": "dict", "default": []},
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
    changes, repositories = [], []
    try:
        changes = ecr_account.sync(
            ecr,
            secrets,
            params["pull_through_rules"],
            params["creation_templates"],
            purge=params["purge"],
            check=module.check_mode,
        )
        repositories = ecr_account.repository_names(ecr)
    except botocore.exceptions.BotoCoreError as exc:
        module.fail_json(msg=f"ECR: {exc}")
    except botocore.exceptions.ClientError as exc:
        module.fail_json(msg=f"ECR: {exc}", error=exc.response.get("Error", {}))

    def text(side: str) -> str:
        return "".join(f"{change}: {json.dumps(getattr(change, side), sort_keys=True)}\n" for change in changes)

    module.exit_json(
        changed=bool(changes),
        changes=[str(change) for change in changes],
        repositories=repositories,
        diff={"before": text("before"), "after": text("after")},
    )


if __name__ == "__main__":
    main()
