//! `sg.*`: security groups and their rules.

use brink_api::protocol::RpcError;
use brink_api::types::{
    Recheck, SgAdd, SgImport, SgInfo, SgMemberSet, SgName, SgRuleAdd, SgRuleDel, SgRuleInfo,
};

use super::Service;
use crate::host::Host;
use crate::sg::{self, SgError};

impl<H: Host> Service<H> {
    pub(super) fn sg_add(&mut self, p: &SgAdd) -> Result<(), RpcError> {
        self.model
            .groups
            .add_group(&p.name, !p.stateless, &p.external_ids)?;
        self.save()
    }

    pub(super) fn sg_del(&mut self, p: &SgName) -> Result<Recheck, RpcError> {
        let users = self.model.group_users(&p.name);
        self.model.groups.del_group(&p.name, &users)?;
        self.commit()
    }

    pub(super) fn sg_list(&self) -> Vec<SgInfo> {
        self.model.groups.infos(|g| self.model.group_users(g))
    }

    pub(super) fn sg_show(&self, p: &SgName) -> Result<SgInfo, RpcError> {
        let g = self.model.groups.group(&p.name)?;
        Ok(sg::info(&p.name, g, self.model.group_users(&p.name)))
    }

    pub(super) fn sg_rule_add(&mut self, p: &SgRuleAdd) -> Result<SgRuleInfo, RpcError> {
        let rule = self.model.groups.add_rule(&p.group, &p.rule, None)?;
        tracing::info!(group = %p.group, id = rule.id, "rule added");
        self.commit()?;
        Ok(sg::rule_info(&rule))
    }

    pub(super) fn sg_rule_del(&mut self, p: &SgRuleDel) -> Result<Recheck, RpcError> {
        self.model.groups.del_rule(&p.group, p.id)?;
        let recheck = self.commit()?;
        tracing::info!(group = %p.group, id = p.id, ?recheck, "rule removed");
        Ok(recheck)
    }

    pub(super) fn sg_member_set(&mut self, p: &SgMemberSet) -> Result<Recheck, RpcError> {
        self.model.groups.set_members(&p.group, &p.members)?;
        let recheck = self.commit()?;
        tracing::info!(group = %p.group, members = p.members.len(), ?recheck, "members set");
        Ok(recheck)
    }

    pub(super) fn sg_import(&mut self, p: &SgImport) -> Result<Vec<SgInfo>, RpcError> {
        let records = sg::import(&p.groups)?;
        self.model.groups.add_records(&records)?;
        self.commit()?;
        let infos: Result<Vec<_>, SgError> = records
            .iter()
            .map(|r| {
                let g = self.model.groups.group(&r.name)?;
                Ok(sg::info(&r.name, g, vec![]))
            })
            .collect();
        Ok(infos?)
    }
}
