"""``payments-admin-cli``: the operators' and tenant-service's tool."""
