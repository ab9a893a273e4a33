def order_key(order):
    return f"order-{order['id']}"
