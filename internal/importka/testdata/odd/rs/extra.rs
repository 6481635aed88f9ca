real_server 192.168.50.23 80 { weight 3
    TCP_CHECK { connect_timeout 1 }
}
