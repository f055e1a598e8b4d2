"""plait-aws: AWS for plait flows.

    from plait_aws import AwsCredentials, S3Bucket, AwsSecret

    AwsCredentials(region_name="eu-west-1").save("default")
    S3Bucket(bucket_name="analytics", credentials=AwsCredentials.load("default")).save("lake")

Blocks: ``AwsCredentials``, ``S3Bucket`` (also the ``s3://`` result storage scheme),
``AwsSecret``. Tasks: ``s3_upload``, ``s3_download``, ``s3_list_objects``, ``s3_copy``,
``s3_move``, ``s3_delete``, ``read_secret``, ``write_secret``, ``delete_secret``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("plait-aws")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

from plait_aws.credentials import AwsClientParameters, AwsCredentials, AwsError, clear_client_cache
from plait_aws.s3 import S3Bucket, default_credentials, s3_bucket_from_url
from plait_aws.secrets_manager import AwsSecret
from plait_aws.tasks import (
    delete_secret,
    read_secret,
    s3_copy,
    s3_delete,
    s3_download,
    s3_list_objects,
    s3_move,
    s3_upload,
    write_secret,
)

__all__ = [
    "AwsClientParameters",
    "AwsCredentials",
    "AwsError",
    "AwsSecret",
    "S3Bucket",
    "__version__",
    "clear_client_cache",
    "default_credentials",
    "delete_secret",
    "read_secret",
    "s3_bucket_from_url",
    "s3_copy",
    "s3_delete",
    "s3_download",
    "s3_list_objects",
    "s3_move",
    "s3_upload",
    "write_secret",
]
