"""The project's tools around the fake switch: ``make demo`` (:mod:`tools.demo`), ``make bench``
(:mod:`tools.bench`, :mod:`tools.ctibench`), the simulated call center they and the ACD tests
share (:mod:`tools.callcenter`: fsapps + fake switches + one Redis), and the real test servers
(:mod:`tools.servers`: private redis-servers, Redis Cluster, fresh PostgreSQL databases);
the real FreeSWITCH harness the real-switch tier (tests/switch) and ``make bench-switch``
(:mod:`tools.benchswitch`) share (:mod:`tools.realswitch`, :mod:`tools.sipp`, :mod:`tools.esl`).
fakefs itself is only the fake switch."""
