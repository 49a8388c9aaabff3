"""Real AWS: the CloudFormation template and the Lambda artifact."""
