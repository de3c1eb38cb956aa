-- -*- lua -*-
-- Lmod modulefile for shoal @VERSION@ (share/modulefile.lua of the release archive).
--
-- The archive shoal-@VERSION@-linux-ARCH.tar.gz unpacks to
--   shoal-@VERSION@-linux-ARCH/{bin/shoal, share/shoal.bash, share/modulefile.lua, README.md, LICENSE}
-- Install it by moving that folder to the prefix below and copying this file into a directory on
-- $MODULEPATH as shoal/@VERSION@.lua:
--
--   A site, under /opt/shoal/@VERSION@ (the default here):
--     tar xzf shoal-@VERSION@-linux-x64.tar.gz        (or -linux-arm64)
--     mkdir -p /opt/shoal && mv shoal-@VERSION@-linux-x64 /opt/shoal/@VERSION@
--     mkdir -p /opt/modulefiles/shoal
--     cp /opt/shoal/@VERSION@/share/modulefile.lua /opt/modulefiles/shoal/@VERSION@.lua
--
--   A user, under ~/opt/shoal/@VERSION@: the same with ~/opt and ~/modulefiles, then
--     module use ~/modulefiles
--   and change `root` below to
--     local root = pathJoin(os.getenv("HOME"), "opt/shoal", version)
--   Any other prefix: set `root` to the folder that holds bin/ and share/.

local version = "@VERSION@"
local root    = pathJoin("/opt/shoal", version)

whatis("Name: shoal")
whatis("Version: " .. version)
whatis("Category: tools, workflow")
whatis("Description: a task farm in one binary: runs many short shell commands on every core and GPU of a workstation or a SLURM allocation, resumable")

help([[
shoal ]] .. version .. [[: a task farm in one binary. Give it a file with one shell command per line and it keeps
every core (and GPU) busy; every task's output and exit code are kept, and a run that is stopped resumes
without running again what finished.

  shoal run tasks.txt                      on this machine, or on every node inside a SLURM allocation
  shoal submit tasks.txt -- -N 4 -t 2:00:00   a chain of SLURM jobs that goes on until every task has ended
  shoal status                             counts, throughput, ETA of the run in ./*.shoal
  shoal --help, shoal VERB --help

Loading this module puts shoal on PATH, sets SHOAL_ROOT to ]] .. root .. [[, and in bash
turns on tab completion. In another shell, or if completion is missing: source $SHOAL_ROOT/share/shoal.bash
Documentation: $SHOAL_ROOT/README.md
]])

-- A copied modulefile whose prefix does not exist fails early with a clear message (not in `module spider`
-- or `module avail`, which evaluate modulefiles without loading them).
if (mode() == "load" and not isDir(pathJoin(root, "bin"))) then
   LmodError("shoal: ", pathJoin(root, "bin"), " does not exist; edit `root` in ", myFileName())
end

setenv("SHOAL_ROOT", root)
prepend_path("PATH", pathJoin(root, "bin"))

-- Tab completion. execute{} hands the command to the shell that evaluates Lmod's output (the user's, in
-- `module load`), after the environment changes; it works on every Lmod 8 (and 7). Only bash: the script
-- is bash. Unloading drops the completion again (the function it defined stays, unused).
if (myShellName() == "bash") then
   local completion = pathJoin(root, "share/shoal.bash")
   execute{cmd = "if [ -r '" .. completion .. "' ]; then . '" .. completion .. "'; fi", modeA = {"load"}}
   execute{cmd = "complete -r shoal 2>/dev/null || :", modeA = {"unload"}}
end
