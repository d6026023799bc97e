"""Callbacks: an ended task's event, POSTed signed to its ``callback_url``, durably.

- ``hosts``: TASKS_CALLBACK_HOSTS, which receivers may be called (at submit and at send);
- ``signing``: Standard Webhooks signatures (TASKS_WEBHOOK_SECRET);
- ``transport``: one POST to a checked address, no redirects, bounded in time and size;
- ``sender``: the outbox sender of the worker processes, one tick per call.

The outbox itself is the store's (``Store.claim_deliveries``): a task's delivery is written in
the transaction that ends the task.
"""
