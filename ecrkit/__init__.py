"""ecrkit: container hosts that pull from Amazon ECR with no stored credentials."""

__version__ = "0.1.0"
