#!/usr/bin/python
"""Ansible module: make an ECR registry match its declaration: repositories, pull-through cache rules,
creation templates, replication, registry scanning and the registry policy replication needs.

Runs on the controller with the project's Python (ansible_python_interpreter set to
ansible_playbook_python), where boto3 and the ecrkit package are; ecrkit.ecr_account holds
the logic. The plan is ecrkit.ecr_account.plan's output.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: ecr_registry
short_description: Repositories and registry-level ECR settings, as declared
version_added: 0.1.0
author: ecrkit maintainers (@ecrkit)
description:
  - Creates and updates repositories (encryption at creation only, tag mutability with exclusions,
    scan on push, lifecycle and repository policies); creates, updates (or replaces, when the
    upstream changes) and, with O(purge), deletes pull-through cache rules and repository creation
    templates; puts the replication and registry scanning configurations and ecrkit's statement of
    the registry policy.
  - Secret names in the rules are resolved to ARNs (the secrets themselves are not read).
  - An encryption that differs from the declared one is reported in RV(drift) and as a warning, never changed.
  - Runs where boto3 and the ecrkit Python package are, normally the controller
    (C(ansible_python_interpreter) set to C(ansible_playbook_python)); the role P(ecrkit.ecr.ecr_account#role)
    calls it.
options:
  plan:
    description:
      - What the registry must hold, as the filter P(ecrkit.ecr.ecr_account#filter) returns it
        from the account's declaration.
    type: dict
    required: true
  purge:
    description: Delete what is not declared (the role's C(ecr_account_purge)).
    type: bool
    default: true
  region:
    description: The registry's region.
    type: str
    required: true
  profile:
    description: An AWS profile name; the usual credential chain otherwise.
    type: str
  endpoint_url:
    description: One endpoint URL for the ECR and Secrets Manager APIs (a stand-in such as moto).
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the registry and reports the changes it would make, making none.
  diff_mode:
    support: full
    details: One line per change, with the settings before and after.
  platform:
    platforms: posix
requirements:
  - boto3
  - the ecrkit Python package
"""

EXAMPLES = r"""
- name: Validate the declaration before any API call
  ansible.builtin.set_fact:
    plan: >-
      {{ {'region': 'eu-west-1', 'account_id': '123456789012',
          'repositories': [{'name': 'team/app'}]} | ecrkit.ecr.ecr_account }}

- name: Make the registry match it
  ecrkit.ecr.ecr_registry:
    plan: "{{ plan }}"
    region: eu-west-1
    purge: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  register: registry
"""

RETURN = r"""
changes:
  description: What was changed (or, in check mode, would be), one C(<action> <kind> <name>) line each.
  returned: always
  type: list
  elements: str
  sample: ["create repository team/app", "update pull-through cache rule docker-hub"]
drift:
  description: Differences ECR cannot change in place (a repository's encryption); reported, never changed.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules put DOCUMENTATION first


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
    changes: list[ecr_account.Change] = []
    drift: list[str] = []
    try:
        changes, drift = ecr_account.sync(ecr, secrets, params["plan"], purge=params["purge"], check=module.check_mode)
    except botocore.exceptions.BotoCoreError as exc:
        module.fail_json(msg=f"ECR: {exc}")
    except botocore.exceptions.ClientError as exc:
        module.fail_json(msg=f"ECR: {exc}", error=exc.response.get("Error", {}))

    for message in drift:
        module.warn(message)
    module.exit_json(**ecr_account.module_result(changes, drift))


if __name__ == "__main__":
    main()
