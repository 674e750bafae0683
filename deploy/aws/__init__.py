"""The AWS plumbing beneath every command: sessions and clients, the one not-found check,
paginated listing, waiting, tag-checked deletion and SageMaker's describe/tag/wait helpers.

It imports nothing above it (no domain module, no command): only deploy.config, deploy.errors,
deploy.names and deploy.state. The session's public names are re-exported here.
"""

from deploy.aws.session import ROLE_ARN, Aws, client_config, connect

__all__ = ["ROLE_ARN", "Aws", "client_config", "connect"]
