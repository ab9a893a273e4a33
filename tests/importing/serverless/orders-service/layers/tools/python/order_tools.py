def describe(order):
    return f"order {order['id']}"
