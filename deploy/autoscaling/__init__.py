"""`autoscale`: one interface (variant.VariantScaling), two ways to scale an endpoint variant.

- invocations.InvocationsScaling: a real-time endpoint, target tracking on invocations per
  instance, never below one instance;
- backlog.BacklogScaling: an asynchronous endpoint, target tracking on its queue, down to zero,
  with a CloudWatch alarm and a step policy that bring it back from zero.

choose.for_endpoint picks one from the endpoint's record; the rest of deploy talks to the
interface only.
"""
