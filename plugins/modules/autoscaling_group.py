#!/usr/bin/python
"""Ansible module: make a docker-autoscaler runner's job hosts match their declaration: the EC2
launch template (ecrkit's userdata, IMDSv2 and its hop limit, the instance profile) and the Auto
Scaling group with the settings GitLab's docs require.

Runs on the controller with the project's Python (ansible_python_interpreter set to
ansible_playbook_python), where boto3 and the ecrkit package are; ecrkit.job_hosts holds the
logic. The plan is ecrkit.job_hosts.plan's output.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: autoscaling_group
short_description: A docker-autoscaler runner's launch template and Auto Scaling group, as declared
version_added: 0.1.0
author: ecrkit maintainers (@ecrkit)
description:
  - Creates the launch template, or makes a new version of it (then its default) only when the declared
    data differs from the default version's; creates the Auto Scaling group or updates its sizes, subnets or
    zones, launch template and scale-in protection; suspends AZRebalance; deletes scaling policies.
  - The desired capacity is set at creation only; the runner owns it afterwards.
  - Drift (a default version ecrkit did not write, a scaling policy, scale-in protection off, AZRebalance
    resumed, another launch template) is reported in RV(drift) and as a warning, and corrected.
  - Runs where boto3 and the ecrkit Python package are, normally the controller
    (C(ansible_python_interpreter) set to C(ansible_playbook_python)); the role
    P(ecrkit.ecr.autoscaling_group#role) calls it.
options:
  plan:
    description:
      - What to declare, as the filter P(ecrkit.ecr.autoscaling_group#filter) returns it.
    type: dict
    required: true
  region:
    description: The region.
    type: str
    required: true
  profile:
    description: An AWS profile name; the usual credential chain otherwise.
    type: str
  endpoint_url:
    description: One endpoint URL for the EC2 and Auto Scaling APIs (a stand-in such as moto).
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the template and the group and reports the changes and drift it would correct, making none.
  diff_mode:
    support: full
    details: One line per change, with the settings before and after (the userdata decoded).
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
      {{ {'region': 'eu-west-1', 'name': 'gitlab-jobs', 'max_size': 10,
          'subnets': ['subnet-0123456789abcdef0'], 'instance_profile': 'gitlab-job-hosts'}
         | ecrkit.ecr.autoscaling_group }}

- name: Make the launch template and the group match it
  ecrkit.ecr.autoscaling_group:
    plan: "{{ plan }}"
    region: eu-west-1
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
"""

RETURN = r"""
changes:
  description: What was changed (or, in check mode, would be), one C(<action> <kind> <name>) line each.
  returned: always
  type: list
  elements: str
  sample: ["create launch template gitlab-jobs", "create auto scaling group gitlab-jobs"]
drift:
  description: What differed from the declaration by another hand than ecrkit's; each also corrected.
  returned: always
  type: list
  elements: str
  sample: ["auto scaling group gitlab-jobs: scaling policy 'cpu'; the runner does the scaling"]
"""

from typing import Any  # noqa: E402 - Ansible modules put DOCUMENTATION first

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "plan": {"type": "dict", "required": True},
            "region": {"type": "str", "required": True},
            "profile": {"type": "str"},
            "endpoint_url": {"type": "str"},
        },
        supports_check_mode=True,
    )
    try:
        import boto3  # noqa: PLC0415 - reported as a module failure, not a traceback
        import botocore.exceptions  # noqa: PLC0415

        from ecrkit import ecr_account, job_hosts  # noqa: PLC0415
    except ImportError as exc:
        module.fail_json(
            msg=f"needs boto3 and ecrkit in ansible_python_interpreter ({exc}); use ansible_playbook_python"
        )
    params = module.params
    session = boto3.Session(profile_name=params["profile"], region_name=params["region"])
    ec2, autoscaling = (session.client(name, endpoint_url=params["endpoint_url"]) for name in ("ec2", "autoscaling"))
    changes: list[Any] = []
    drift: list[str] = []
    try:
        changes, drift = job_hosts.sync(ec2, autoscaling, params["plan"], check=module.check_mode)
    except botocore.exceptions.BotoCoreError as exc:
        module.fail_json(msg=f"EC2 / Auto Scaling: {exc}")
    except botocore.exceptions.ClientError as exc:
        module.fail_json(msg=f"EC2 / Auto Scaling: {exc}", error=exc.response.get("Error", {}))

    for message in drift:
        module.warn(message)
    module.exit_json(**ecr_account.module_result(changes, drift))


if __name__ == "__main__":
    main()
