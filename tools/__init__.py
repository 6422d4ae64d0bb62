"""The project's tools around the fake switch: ``make demo`` (:mod:`tools.demo`), ``make bench``
(:mod:`tools.bench`, :mod:`tools.ctibench`), the simulated call center they and the ACD tests
share (:mod:`tools.callcenter`: fsapps + fake switches + one Redis), and the real test servers
(:mod:`tools.servers`: private redis-servers, Redis Cluster, fresh PostgreSQL databases).
fakefs itself is only the fake switch."""
