%% Drives the baseline: for each state size, start the server, then swap it
%% N times between two compiled versions, timing suspend -> resume, and
%% print one JSON line per size.
-module(molt_bench).
-export([run/1]).

run([Dir, SizesArg, SwapsArg]) ->
    Sizes = [list_to_integer(S) || S <- string:tokens(SizesArg, ",")],
    Swaps = [list_to_integer(S) || S <- string:tokens(SwapsArg, ",")],
    {ok, V1} = file:read_file(filename:join(Dir, "v1/molt_bench_server.beam")),
    {ok, V2} = file:read_file(filename:join(Dir, "v2/molt_bench_server.beam")),
    lists:foreach(fun({Size, N}) -> size_run(Size, N, V1, V2) end, lists:zip(Sizes, Swaps)),
    halt(0).

%% Items shaped like molt's bench state: small records of about 32 bytes each.
items(Bytes) -> [{I, <<"name">>, I * 3} || I <- lists:seq(1, max(1, Bytes div 32))].

size_run(Bytes, N, V1, V2) ->
    code:purge(molt_bench_server),
    {module, _} = code:load_binary(molt_bench_server, "v1", V1),
    {ok, Pid} = molt_bench_server:start_link(items(Bytes)),
    Times = [swap(Pid, case I rem 2 of 0 -> V2; 1 -> V1 end) || I <- lists:seq(1, N)],
    1 = gen_server:call(Pid, incr),
    unlink(Pid),
    exit(Pid, kill),
    Us = lists:sort(Times),
    io:format("{\"bytes\":~b,\"swaps\":~b,\"us\":[~s]}~n",
              [Bytes, N, string:join([integer_to_list(T) || T <- Us], ",")]).

swap(Pid, Bin) ->
    %% Only two versions of a module can be loaded: drop the old one first, outside the timing.
    code:purge(molt_bench_server),
    T0 = erlang:monotonic_time(microsecond),
    ok = sys:suspend(Pid),
    {module, _} = code:load_binary(molt_bench_server, "swap", Bin),
    ok = sys:change_code(Pid, molt_bench_server, undefined, []),
    ok = sys:resume(Pid),
    T1 = erlang:monotonic_time(microsecond),
    T1 - T0.
