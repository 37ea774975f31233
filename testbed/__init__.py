"""ecrkit's test bed: disposable podman hosts (`hosts`), the local stand-in for AWS and ECR
(`standin`, `standin_ecr`) and for EC2's instance metadata (`standin_imds`).

It lives beside the runtime package, not in it: the wheel does not ship it and no module of
`ecrkit` imports it (tests/test_distribution.py checks both). `make run`, the tests and the
benchmarks use it from the checkout; `python -m testbed` is `make run`.
"""
